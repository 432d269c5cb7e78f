"""CI: run the study pipelines end to end at SCALE=tiny and check what they report.

    .venv/bin/python examples/ci_check.py [--study all | STUDY...] [--out DIR] [--keep]

Runs `bash examples/<study>.sh` for each study (default: all of them, one after another:
lpo, nofeat, open_ff, open, lpg, suppf), every stage of each, with the real `openai` client
talking to a local chat-completions server on 127.0.0.1 (`tests/llm_server.py`, one per
study), which answers with the paper's own LLM-proposed functions for the algorithm the prompt
is about (Supplement C.2, `paper_replies.py`). Then checks that the stages ran, that the
report's files exist, that every number in its tables is finite and that it shows the
approaches the study must show, and prints each script's wall time. Exits non-zero if any
study failed (after running the rest). No network is needed beyond 127.0.0.1.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from llm_server import ScriptedServer, reply, status  # noqa: E402
from paper_replies import replies  # noqa: E402

STUDIES = ("lpo", "nofeat", "open_ff", "open", "lpg", "suppf")
PPO = "PPO (hand-designed)"  # every study's reference, on the same seeds
FIVE = {"Black-Box Learning", "Same-Size Distillation", "Smaller Distillation",
        "Symbolic Distillation", "LLM Proposal", PPO}  # fmt: skip
APPROACHES = {  # what each study's report must show (tiny runs every stage)
    "lpo": FIVE, "nofeat": FIVE, "open_ff": FIVE, "suppf": FIVE,
    "open": {"Black-Box Learning", "LLM Proposal", PPO} | {
        f"{size} Distillation ({rollout} Rollout)"
        for size in ("Same-Size", "Smaller") for rollout in ("Long", "Short")
    },
    "lpg": {"Black-Box Learning", "Same-Size Distillation", "Smaller Distillation",
            "A2C (hand-designed)", PPO},
}  # fmt: skip
STAGES = {  # the metarl commands each study runs (open: no symbolic; lpg: neither, §7.4)
    "lpo": ["train es", "distil", "symbolic", "discover", "evaluate"],
    "open": ["train es", "distil", "discover", "evaluate"],
    "lpg": ["train metagrad", "distil", "evaluate"],
}
LLM_ALGOS = {  # the algorithms whose discover runs ask the local model
    "lpo": ["lpo"], "nofeat": ["nofeat"], "open_ff": ["open_ff"], "open": ["open"], "lpg": [],
    "suppf": ["lpo", "nofeat", "open_ff"],
}  # fmt: skip
FIGURES = {"suppf": "supplement_f"}  # a figure the report must draw (Figures 15-17)
REPORT_FILES = [
    "index.html", "report.md", "summary.json", "aggregate.csv", "aggregate.json",
    "per_env.csv", "per_env.json", "table1.csv", "table1.json", "programs.json",
]  # fmt: skip
# The glossary line of `discover`'s system prompt that tells which algorithm it asks for,
# most specific first (OPEN's inputs include OPEN-FF's, which include No Features').
PROMPT_MARKS = [("lpo", "'ratio' is"), ("open", "'var' is"), ("open_ff", "'l_p' is"),
                ("nofeat", "'g' is")]  # fmt: skip


def finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def algorithm_of(body: dict[str, Any]) -> str | None:
    """The algorithm a chat-completions request asks about, from its system prompt."""
    text = "\n".join(str(m.get("content") or "") for m in body.get("messages", []))
    return next((algo for algo, mark in PROMPT_MARKS if mark in text), None)


class Replies:
    """Stands in for `ScriptedServer.script`: the next reply is one of the paper's proposals
    for the algorithm the request (already recorded by the server) asks about, in turn, so one
    server serves the several discover runs of a study (suppf.sh has three)."""

    def __init__(self, server: ScriptedServer, algos: list[str]) -> None:
        self.server = server
        self.messages = {a: [m["content"] for m in replies(a)] for a in algos}
        self.asked = dict.fromkeys(algos, 0)

    def __bool__(self) -> bool:
        return True

    def popleft(self) -> dict[str, Any]:
        algo = algorithm_of(self.server.requests[-1]["body"])
        if algo not in self.messages:
            return status(400)  # a prompt for an algorithm this study does not run
        messages = self.messages[algo]
        self.asked[algo] += 1
        return reply(messages[(self.asked[algo] - 1) % len(messages)])


def serve(algos: list[str]) -> tuple[ScriptedServer, Replies]:
    """A local chat-completions server answering with the paper's LLM proposals (Supplement
    C.2) for each of `algos`."""
    server = ScriptedServer()
    script = Replies(server, algos)
    server.script = script  # type: ignore[assignment]
    return server, script


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
    if study in FIGURES and not any(FIGURES[study] in f["png"] for f in summary["figures"]):
        problems.append(f"no {FIGURES[study]} figure")
    aggregate = json.loads((report / "aggregate.json").read_text())
    for row in aggregate:
        for key in ("iqm", "ci_low", "ci_high"):
            if not finite(row.get(key)):
                problems.append(f"aggregate {row['approach']} {row['panel']}: {key} = {row[key]}")
    for row in json.loads((report / "per_env.json").read_text()):
        for key in ("iqm", "ci_low", "ci_high", "mean", "env_steps_per_s"):
            if not finite(row.get(key)):
                problems.append(f"per_env {row['approach']} {row['env']}: {key} = {row[key]}")
    seen: dict[str, set[str]] = {}  # the report's studies (suppf: one per algorithm)
    for row in aggregate:
        seen.setdefault(row["study"], set()).add(row["approach"])
    if len(seen) != len(LLM_ALGOS[study] or [study]):
        problems.append(f"the report shows {len(seen)} studies: {sorted(seen)}")
    for name, approaches in seen.items():
        missing = APPROACHES[study] - approaches
        if missing:
            problems.append(f"approaches missing from {name}: {sorted(missing)}")
    return problems


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def run_study(study: str, out: Path) -> tuple[float, list[str]]:
    """Runs examples/STUDY.sh at SCALE=tiny into `out`: (wall seconds, problems)."""
    algos = LLM_ALGOS[study]
    metarl = ROOT / ".venv" / "bin" / "metarl"
    env = {
        **os.environ,
        "SCALE": "tiny",
        "OUT": str(out),
        "METARL_LLM_BACKOFF": "0.05",
        "METARL": os.environ.get("METARL") or (str(metarl) if metarl.exists() else "metarl"),
    }
    for name in ("OPENAI_API_KEY", "LLM_REPLAY", "LLM_BASE_URL", "LLM_MODEL", "TRAIN_ENVS",
                 "EVAL_ENVS", "EVAL_SUITE", "OPEN_NPY"):  # fmt: skip
        env.pop(name, None)
    server, script = serve(algos) if algos else (None, None)
    if server is not None:
        env.update(LLM_BASE_URL=server.base_url, LLM_MODEL="ci-scripted")
    script_path = ROOT / "examples" / f"{study}.sh"
    print(f"ci_check: {script_path.name} at SCALE=tiny into {out}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(script_path)], env=env, check=False)
    wall = time.perf_counter() - t0
    if server is not None:
        server.close()
    if proc.returncode != 0:
        return wall, [f"{script_path.name} exited with {proc.returncode}"]
    problems = []
    if script is not None:
        problems += [f"discover never asked the local model about {a}"
                     for a, n in script.asked.items() if n == 0]  # fmt: skip
    stages = (out / "stages.tsv").read_text()
    expected = STAGES.get(study, STAGES["lpo"])
    problems += [f"stage that did not run: metarl {s}" for s in expected
                 if f"metarl {s} " not in stages]  # fmt: skip
    return wall, problems + check_report(out / "report", study)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", nargs="+", default=["all"], choices=[*STUDIES, "all"],
                        help="the studies to run (default: all)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="output directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    studies = list(STUDIES) if "all" in args.study else list(dict.fromkeys(args.study))
    root = args.out or Path(tempfile.mkdtemp(prefix="metarl-ci-"))
    results = []
    t0 = time.perf_counter()
    for study in studies:
        wall, problems = run_study(study, root / study)
        results.append((study, wall, problems))
        if problems:
            print(f"ci_check: FAILED: {study}.sh: " + "; ".join(problems[:10]), file=sys.stderr)
        else:
            print(f"ci_check: OK: {study}.sh in {wall:.0f} s; report {root / study / 'report'}")
    total = time.perf_counter() - t0
    print(f"ci_check: wall times at SCALE=tiny ({os.cpu_count()} cores):")
    for study, wall, problems in results:
        print(f"  {study + '.sh':<11} {wall:6.0f} s  {'FAILED' if problems else 'ok'}")
    print(f"  {'total':<11} {total:6.0f} s")
    if args.out is None and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if any(problems for _, _, problems in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
