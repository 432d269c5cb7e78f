"""`metarl inspect` shows every string from the file literally (no rich markup, no control
characters) and says where the kernel came from."""

from __future__ import annotations

import json

import jax
import pytest

from metarl_cli.artefacts import MetaLearnerInfo
from metarl_cli.cli.app import main
from metarl_cli.cli.inspect import visible
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.io import save_kernel, save_learned

MARKUP = ["[conceal]hidden()[/conceal]", "[false]", "[bold red]x[/]", ":smile:"]
HOSTILE_SOURCE = (
    "def f(r, A):\n"
    "    # [conceal]hidden()[/conceal] [false]\n"
    "    # [bold red]x[/] :smile: \x1b[2K\x1b[1A\u202e\n"
    "    return tanh(r) * A\n"
)


@pytest.fixture
def hostile(tmp_path):
    path = tmp_path / "hostile.safetensors"
    save_kernel(
        path,
        get_algorithm("lpo"),
        "symbolic",
        HOSTILE_SOURCE,
        meta_learner=MetaLearnerInfo(name="import", config={"source": "[false]paste"}),
        notes="note [conceal]gone[/conceal]\rover\x9bwritten\x07",
    )
    return path


def test_markup_and_control_characters_are_shown_literally(hostile, capsys):
    assert main(["inspect", str(hostile)]) == 0
    shown = capsys.readouterr().out
    for text in [*MARKUP, "hidden()", "return tanh(r) * A", "[false]paste"]:
        assert text in shown, text
    assert "\\x1b[2K\\x1b[1A\\u202e" in shown  # escaped, not interpreted
    assert "note [conceal]gone[/conceal]\\rover\\x9bwritten\\x07" in shown
    assert not any(c in shown for c in "\x1b\r\x07\x9b\u202e")
    assert "provenance" in shown and "imported; source: [false]paste" in shown


def test_json_keeps_the_text_exact_and_escaped(hostile, capsys):
    assert main(["inspect", str(hostile), "--json"]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\r" not in shown
    data = json.loads(shown)
    assert data["manifest"]["expression"] == HOSTILE_SOURCE
    assert data["provenance"] == "imported; source: [false]paste"


@pytest.mark.parametrize(
    "learner,expected",
    [
        (None, "imported (no meta-learner recorded)"),
        (MetaLearnerInfo(name="es", config={"env_steps": 64}), "meta-learned (es)"),
        (MetaLearnerInfo(name="distil", config={}), "meta-learned (distil)"),
        (MetaLearnerInfo(name="llm", config={"candidate": "c1"}), "discovered (LLM)"),
    ],
)
def test_provenance_row(learner, expected, tmp_path, capsys):
    lpo = get_algorithm("lpo")
    path = tmp_path / "k.safetensors"
    theta = lpo.init(jax.random.key(0), hidden=4)
    save_learned(path, lpo, theta, architecture={"hidden": 4}, meta_learner=learner)
    assert main(["inspect", str(path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "│ provenance " in line]
    assert len(rows) == 1 and expected in rows[0]
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"] == expected


def test_visible_escapes_only_control_characters():
    assert visible("a\tb\nc [x] é 中") == "a\tb\nc [x] é 中"
    assert visible("\x00\x1b\x7f\x85\u2066") == "\\x00\\x1b\\x7f\\x85\\u2066"
