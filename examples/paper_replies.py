"""Print the paper's LLM-proposed functions for ALGO as a replayable conversation.

    .venv/bin/python examples/paper_replies.py lpo > lpo-replies.json
    LLM_REPLAY=lpo-replies.json SCALE=cpu bash examples/lpo.sh

The output is a JSON list of assistant messages, one per function of Supplement C.2 that an LLM
proposed for ALGO (after meta-training in MinAtar, then in Ant), in the reply format `metarl
discover` expects (`thought`, `name`, `code`). `metarl discover --replay` serves them as the
model's replies, offline, so the LLM-proposal stage of a study script runs without a model: it
checks and trains the paper's own proposals on your environments and keeps the fitter one. It
is a stand-in, not a language model: no conversation adapts to the feedback, and the report's
"LLM Proposal" is then the paper's proposal re-evaluated here.
"""

from __future__ import annotations

import json
import sys

from metarl_cli.learned.library import PAPER

# Supplement C.2's LLM proposals per study script (MinAtar first, then Ant).
PROPOSALS = {
    "lpo": ["log_poly_clip", "log_clip_penalty_v2"],
    "nofeat": ["relative_magnitude_update", "HybridBetaMomentum"],
    "open_ff": ["Power_Sign_Adaptive", "robust_extrapolated"],
    "open": ["AdaptiveLayerRAdam"],
}


def replies(algo: str) -> list[dict[str, str]]:
    """The model's replies (JSON text) holding the paper's proposals for `algo`."""
    out = []
    for name in PROPOSALS[algo]:
        kernel = PAPER.get(name)
        thought = f"Not a model's reply: the paper's {kernel.origin} (examples/paper_replies.py)."
        reply = {"thought": thought, "name": name, "code": kernel.text}
        out.append({"role": "assistant", "content": json.dumps(reply)})
    return out


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in PROPOSALS:
        print(f"usage: paper_replies.py {{{','.join(PROPOSALS)}}}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(json.dumps(replies(sys.argv[1]), indent=1) + "\n")


if __name__ == "__main__":
    main()
