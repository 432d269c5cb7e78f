"""The discover run directory: the conversation and the archive, saved after every step.

`DiscoverRunDir` is a `meta/rundir.py` run dir like every meta-learner's (the same checks
before anything is written, the lock held to the end of the run, `--force` removing only its
own files); its state is JSON, not a safetensors checkpoint.

`RUN_DIR/conversation.json` is the whole state (the config, every chat message, the archive of
every candidate) and the only file `--resume` reads; `RUN_DIR/archive.json` is a derived table
for people. Both are written atomically, twice per turn: once as soon as the model's reply
arrives (the entry is `pending`) and once when its validation and fitness are known. A run
killed at any moment therefore resumes without asking the model again for a reply it already
paid for (unlike the original, whose resume could never work, reference §7.5).

Archive entries (`turn` 0 is the warm start):
`{turn, status, name, thought, code, reply, error, feedback, fitness, per_env, returns,
validation, usage, attempts, request_errors, times: {model_s, validation_s, evaluation_s,
total_s}, replayed}` with `status` one of pending, malformed, invalid, failed, evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl_cli.errors import ConfigError
from metarl_cli.fsutil import atomic_write_text
from metarl_cli.meta.rundir import RunDirBase

FORMAT = "metarl-discover-run"
VERSION = 1
CONVERSATION = "conversation.json"
ARCHIVE = "archive.json"
_SUMMARY_KEYS = ("turn", "status", "name", "fitness", "per_env", "error", "usage", "times")


@dataclass
class RunState:
    """The whole state of a discover run (what `conversation.json` holds)."""

    config: dict[str, Any]
    messages: list[dict[str, str]] = field(default_factory=list)
    archive: list[dict[str, Any]] = field(default_factory=list)
    sessions: int = 0
    stopped: str | None = None

    @classmethod
    def load(cls, path: Path) -> RunState:
        """Reads `conversation.json` at `path`.

        Raises:
            ConfigError: unreadable, not a discover run, or another format version.
        """
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"cannot read {path}: {e}; use another --run-dir or --force"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a metarl discover run; use another --run-dir")
        if data.get("version") != VERSION:
            raise ConfigError(
                f"{path} has format version {data.get('version')}, this metarl reads {VERSION}"
            )
        return cls(
            config=data["config"],
            messages=data["messages"],
            archive=data["archive"],
            sessions=int(data.get("sessions", 0)),
        )

    def save(self, run_dir: Path) -> None:
        """Writes `conversation.json` and the derived `archive.json` into `run_dir`, each
        atomically."""
        data = {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config,
            "sessions": self.sessions,
            "stopped": self.stopped,
            "messages": self.messages,
            "archive": self.archive,
        }
        atomic_write_text(run_dir / CONVERSATION, json.dumps(data, indent=1) + "\n", force=True)
        table = [{k: e.get(k) for k in _SUMMARY_KEYS} for e in self.archive]
        atomic_write_text(run_dir / ARCHIVE, json.dumps(table, indent=1) + "\n", force=True)

    @property
    def candidates(self) -> list[dict[str, Any]]:
        return [e for e in self.archive if e["turn"] > 0]

    def turns_done(self) -> int:
        return sum(1 for e in self.candidates if e["status"] != "pending")

    def pending(self) -> dict[str, Any] | None:
        last = self.archive[-1] if self.archive else None
        return last if last is not None and last["status"] == "pending" else None

    def best(self) -> dict[str, Any] | None:
        """The evaluated candidate with the highest fitness (the warm start is not one)."""
        done = [e for e in self.candidates if e["status"] == "evaluated"]
        return max(done, key=lambda e: e["fitness"]) if done else None


class DiscoverRunDir(RunDirBase):
    """The discover run directory (module doc): `conversation.json` and `archive.json`."""

    FIXED = (CONVERSATION, ARCHIVE)

    def read_state(self) -> RunState | None:
        """The saved run; None when the directory holds none."""
        path = self.file(CONVERSATION)
        return RunState.load(path) if path.exists() else None

    def save(self, state: RunState) -> None:
        """Writes the state (both files, atomically)."""
        state.save(self.path)
