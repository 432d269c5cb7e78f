"""CI: run one study pipeline end to end at SCALE=tiny and check what it reports.

    .venv/bin/python examples/ci_check.py [--study lpo] [--out DIR] [--keep]

Runs `bash examples/<study>.sh` (every stage: train es, distil same and smaller, symbolic,
discover, evaluate, report) with the real `openai` client talking to a local chat-completions
server on 127.0.0.1 (`tests/llm_server.py`), which answers with the paper's own LLM-proposed
functions (Supplement C.2, `paper_replies.py`). Then checks that the report's files exist
and that every number in its tables is finite, and prints the wall time. Exits non-zero on
any failure. No network is needed beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from llm_server import ScriptedServer, reply  # noqa: E402
from paper_replies import PROPOSALS, replies  # noqa: E402

APPROACHES = {  # what each study's report must show (tiny runs every stage)
    "lpo": {"Black-Box Learning", "Same-Size Distillation", "Smaller Distillation",
            "Symbolic Distillation", "LLM Proposal"},
}  # fmt: skip
REPORT_FILES = [
    "index.html", "report.md", "summary.json", "aggregate.csv", "aggregate.json",
    "per_env.csv", "per_env.json", "table1.csv", "table1.json", "programs.json",
]  # fmt: skip
STAGES = ["train es", "distil", "symbolic", "discover", "evaluate"]  # open.sh: no symbolic


def fail(message: str) -> None:
    print(f"ci_check: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def serve(study: str) -> ScriptedServer:
    """A local chat-completions server answering with the paper's LLM proposals for the study
    (Supplement C.2, `paper_replies.py`), enough of them for one discover run."""
    server = ScriptedServer()
    for message in replies(study) * 2:
        server.push(reply(message["content"]))
    return server


def check_report(report: Path, study: str) -> list[str]:
    """Problems with the report directory (empty when it is complete and finite)."""
    problems = [f"missing or empty {f}" for f in REPORT_FILES if not _nonempty(report / f)]
    if problems:
        return problems
    summary = json.loads((report / "summary.json").read_text())
    for fig in summary["figures"]:
        png = report / fig["png"]
        if not _nonempty(png) or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            problems.append(f"figure {fig['png']} is missing or not a PNG")
    if not summary["figures"]:
        problems.append("no figures")
    aggregate = json.loads((report / "aggregate.json").read_text())
    for row in aggregate:
        for key in ("iqm", "ci_low", "ci_high"):
            if not finite(row.get(key)):
                problems.append(f"aggregate {row['approach']} {row['panel']}: {key} = {row[key]}")
    for row in json.loads((report / "per_env.json").read_text()):
        for key in ("iqm", "ci_low", "ci_high", "mean", "env_steps_per_s"):
            if not finite(row.get(key)):
                problems.append(f"per_env {row['approach']} {row['env']}: {key} = {row[key]}")
    seen = {row["approach"] for row in aggregate}
    missing = APPROACHES.get(study, set()) - seen
    if missing:
        problems.append(f"approaches missing from the report: {sorted(missing)}")
    return problems


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="lpo", choices=sorted(PROPOSALS))
    parser.add_argument("--out", type=Path, help="output directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix=f"metarl-ci-{args.study}-"))
    server = serve(args.study)
    metarl = ROOT / ".venv" / "bin" / "metarl"
    env = {
        **os.environ,
        "SCALE": "tiny",
        "OUT": str(out),
        "LLM_BASE_URL": server.base_url,
        "LLM_MODEL": "ci-scripted",
        "METARL_LLM_BACKOFF": "0.05",
        "METARL": os.environ.get("METARL") or (str(metarl) if metarl.exists() else "metarl"),
    }
    env.pop("OPENAI_API_KEY", None)
    env.pop("LLM_REPLAY", None)
    t0 = time.perf_counter()
    script = ROOT / "examples" / f"{args.study}.sh"
    proc = subprocess.run(["bash", str(script)], env=env, check=False)
    wall = time.perf_counter() - t0
    server.close()
    if proc.returncode != 0:
        fail(f"{script.name} exited with {proc.returncode} after {wall:.0f} s")
    asked = len(server.requests)
    if asked == 0:
        fail("metarl discover never reached the local model server")
    stages = (out / "stages.tsv").read_text()
    expected = [s for s in STAGES if not (args.study == "open" and s == "symbolic")]
    missing = [s for s in expected if f"metarl {s} " not in stages]
    if missing:
        fail(f"stages that did not run: {missing}")
    problems = check_report(out / "report", args.study)
    if problems:
        fail("; ".join(problems[:10]))
    print(
        f"ci_check: OK: {script.name} at SCALE=tiny in {wall:.0f} s ({asked} model requests); "
        f"report {out / 'report'}"
    )
    if args.out is None and not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
