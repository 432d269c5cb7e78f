"""The root `metarl` command: subcommand registration and the one place errors are mapped.

Importing this module imports Typer, rich and pydantic but never JAX, so `metarl --help` and
`metarl --version` are fast; each command imports the library lazily in its body.
"""

from __future__ import annotations

import errno
import sys

import typer

from metarl_cli._version import __version__
from metarl_cli.cli import bench as bench_cmd
from metarl_cli.cli import discover as discover_cmd
from metarl_cli.cli import distil as distil_cmd
from metarl_cli.cli import envs as envs_cmd
from metarl_cli.cli import evaluate as evaluate_cmd
from metarl_cli.cli import import_cmd
from metarl_cli.cli import inspect as inspect_cmd
from metarl_cli.cli import launch as launch_cmd
from metarl_cli.cli import metagrad as metagrad_cmd
from metarl_cli.cli import report as report_cmd
from metarl_cli.cli import symbolic as symbolic_cmd
from metarl_cli.cli import train as train_cmd

app = typer.Typer(
    name="metarl",
    help="Meta-learn reinforcement-learning algorithms in JAX (Goldie et al., RLC 2025).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"metarl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show full tracebacks for errors."),
) -> None:
    """metarl: one CLI for learned RL algorithms and the methods that learn them."""


app.command("evaluate")(evaluate_cmd.evaluate)
app.command("envs")(envs_cmd.envs)
app.command("bench")(bench_cmd.bench)
app.command("inspect")(inspect_cmd.inspect)
app.command("import")(import_cmd.import_)
app.command("report")(report_cmd.report)
app.add_typer(train_cmd.app, name="train")
train_cmd.app.command("metagrad")(metagrad_cmd.metagrad)
app.command("distil")(distil_cmd.distil)
app.command("symbolic")(symbolic_cmd.symbolic)
app.command("discover")(discover_cmd.discover)
app.command("launch")(launch_cmd.launch)


def _verbose(argv: list[str]) -> bool:
    return "--verbose" in argv or "-v" in argv


# OS errors that are the user's environment, not a bug: one line, like any user error.
_USER_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOTDIR,
    }
)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app and maps user errors to one line and exit code 2.

    User errors are `MetarlError`s, pydantic `ValidationError`s, Typer's usage errors (an
    unknown command or option, a missing argument, a value of the wrong type), OS errors of
    the user's environment (disk full, read-only or permission denied) and, as a backstop,
    `OverflowError` (a number too large for NumPy or JAX). Each becomes one line
    on stderr and exit code 2; `--verbose` re-raises them with their traceback. Asking for no
    command prints the help (exit 2, as click does). A meta-learner stopped by Ctrl-C
    (`Interrupted`, every meta-learner's) prints where it stopped and the command that resumes
    it, exit 130.
    """
    from pydantic import ValidationError
    from typer._click import exceptions as click_errors  # Typer vendors click from 0.29 on

    from metarl_cli.cli._guard import remember_argv
    from metarl_cli.cli._quiet import quiet_third_party
    from metarl_cli.distributed import PeerLost, exit_lost
    from metarl_cli.errors import Interrupted, MetarlError
    from metarl_cli.fsutil import unlock_all_run_dirs
    from metarl_cli.rl.parallel import expose_cpu_cores

    argv = list(sys.argv[1:] if argv is None else argv)
    remember_argv(argv)  # a multi-process command re-runs itself under a guard
    expose_cpu_cores()  # before anything imports JAX
    quiet_third_party(_verbose(argv))  # XLA's log lines and library warnings: --verbose only
    try:
        try:
            result = app(args=argv, prog_name="metarl", standalone_mode=False)
        finally:
            unlock_all_run_dirs()  # the command's run dirs are free for the next one
    except click_errors.NoArgsIsHelpError as e:
        e.show()
        return e.exit_code
    except (MetarlError, ValidationError, click_errors.ClickException) as e:
        if _verbose(argv):
            raise
        typer.echo(f"error: {one_line(e)}", err=True)
        return 2
    except OSError as e:
        if e.errno not in _USER_ERRNOS or _verbose(argv):
            raise
        typer.echo(f"error: {one_line(e)}", err=True)
        return 2
    except OverflowError as e:  # a number past what NumPy/JAX hold that no check caught first
        if _verbose(argv):
            raise
        typer.echo(f"error: a number is too large ({one_line(e)}); use a smaller value", err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Interrupted as e:
        typer.echo(f"interrupted after {e.done}; {e.saved}", err=True)
        typer.echo(f"resume with: {e.resume or resume_command(argv)}", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except PeerLost as e:  # a multi-process run lost a process: one line, exit 75 at once
        exit_lost(e)
    return result if isinstance(result, int) else 0


def resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted run: this one, with `--resume`."""
    import shlex

    return shlex.join(["metarl", *argv, *([] if "--resume" in argv else ["--resume"])])


def one_line(e: Exception) -> str:
    """A single-line message for a user error (pydantic: the first failing field; a usage
    error: click's message and where to find the command's help; an OS error: what failed on
    which path)."""
    from pydantic import ValidationError
    from typer._click import exceptions as click_errors

    if isinstance(e, click_errors.ClickException):
        msg = " ".join(e.format_message().split())
        ctx = getattr(e, "ctx", None)
        return f"{msg} (see '{ctx.command_path} --help')" if ctx is not None else msg
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename}" if e.filename is not None else ""
        return f"{e.strerror}{where}"
    if isinstance(e, ValidationError):
        errs = e.errors()
        first = errs[0]
        where = ".".join(str(p) for p in first["loc"]) or e.title
        msg = first["msg"].removeprefix("Value error, ")
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        return f"invalid {where}: {msg}{more}"
    return " ".join(str(e).split())


def run() -> None:
    """The `metarl` console script."""
    sys.exit(main())
