"""`python -m metarl_cli` runs the CLI."""

from metarl_cli.cli.app import run

if __name__ == "__main__":
    run()
