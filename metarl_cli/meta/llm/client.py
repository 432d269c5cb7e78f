"""Talking to the model: any OpenAI-compatible chat-completions server, or a recorded run.

`OpenAIChat` uses the `openai` package's chat-completions API (`--model`, `--base-url`) and
retries rate limits (429), server errors (5xx), timeouts, dropped connections and unreadable
response bodies with exponential backoff (base `METARL_LLM_BACKOFF` seconds, default 2, capped
at 60 s, or the server's `Retry-After`). Other HTTP errors (401, 404, 400) stop the run with one
line. `ReplayChat` serves the replies of a recorded conversation instead, so a run can be
reproduced without a model or a key.

Costs are estimated from the token usage the server reports, with `PRICES` (USD per million
input and output tokens, list prices of 2025; reasoning tokens are billed as output and
included in `completion_tokens`). A model not in the table has an unknown cost unless
`--price IN,OUT` gives one.

The API key is read from the environment variable `--api-key-env` names (default
`OPENAI_API_KEY`; else from a `.env` file in the working directory). It goes to the server in
the `Authorization` header only: `key_notice` says which host will receive it, and whatever the
server sends back (errors, replies) is stored with the key replaced by `***`. Without a key a
placeholder (`EMPTY`) is sent, which local servers accept.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl_cli.errors import ConfigError, MetarlError
from metarl_cli.fsutil import os_reason
from metarl_cli.meta.llm.config import DiscoverError

# USD per 1M tokens (input, output). Longest matching prefix wins ("o3-mini-2025-01-31").
PRICES: dict[str, tuple[float, float]] = {
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o1-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
}


class LLMError(MetarlError):
    """The model server refused or could not answer; the run is saved and can be resumed."""


def price_for(
    model: str, override: tuple[float, float] | None = None
) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for `model`, or None when unknown."""
    if override is not None:
        return override
    matches = [k for k in PRICES if model == k or model.startswith(k + "-")]
    return PRICES[max(matches, key=len)] if matches else None


def cost_usd(usage: dict[str, Any], price: tuple[float, float] | None) -> float | None:
    """The cost of one call from its token usage, or None when the price or usage is unknown."""
    if price is None or usage.get("prompt_tokens") is None:
        return None
    out = usage.get("completion_tokens") or 0
    return (usage["prompt_tokens"] * price[0] + out * price[1]) / 1e6


def _dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY_PLACEHOLDER = "EMPTY"  # sent when there is no key: the openai client needs one


def find_api_key(cwd: str | Path | None = None, name: str = DEFAULT_KEY_ENV) -> str | None:
    """The environment variable `name`, else `name` from a `.env` file in `cwd`."""
    key = os.environ.get(name)
    if key:
        return key
    return _dotenv(Path(cwd or Path.cwd()) / ".env").get(name) or None


def no_key(name: str = DEFAULT_KEY_ENV) -> str:
    """The one-line error for a run that needs a key and has none."""
    return (
        f"no API key for the model: export {name}=..., or put {name}=... in a .env "
        "file in this directory, or pass --base-url for a local OpenAI-compatible server, or "
        "--replay FILE to re-run a recorded conversation"
    )


NO_KEY = no_key()


@dataclass
class Reply:
    """One answer of the model.

    Attributes:
        content: the assistant message's text.
        usage: token counts as reported ({"prompt_tokens", "completion_tokens"}), may be empty.
        model_s: wall time of the call, retries and backoff included.
        attempts: requests made; errors: what the failed attempts answered.
        replayed: served from a recording, no model was called.
    """

    content: str
    usage: dict[str, Any] = field(default_factory=dict)
    model_s: float = 0.0
    attempts: int = 1
    errors: list[str] = field(default_factory=list)
    replayed: bool = False


def _backoff(attempt: int, error: Exception | None) -> float:
    base = float(os.environ.get("METARL_LLM_BACKOFF", "2"))
    delay = min(base * 2**attempt, 60.0)
    response = getattr(error, "response", None)
    retry_after = getattr(response, "headers", {}).get("retry-after") if response else None
    if retry_after:
        with contextlib.suppress(ValueError):
            delay = min(max(delay, float(retry_after)), 60.0)
    return delay


class OpenAIChat:
    """Chat completions through the `openai` client (retries and backoff are ours)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        retries: int,
        json_mode: bool = True,
        key_env: str = DEFAULT_KEY_ENV,
    ) -> None:
        from openai import OpenAI

        self.model, self.retries, self.json_mode = model, retries, json_mode
        self.key_env, self._secret = key_env, api_key or None
        self.client = OpenAI(
            api_key=api_key or NO_KEY_PLACEHOLDER,  # local servers ignore it
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
        )

    def key_notice(self) -> str:
        """One line: which host receives the key (or that none is sent)."""
        url = self.client.base_url
        host = url.netloc.decode("ascii", "replace") + (" (http)" if url.scheme == "http" else "")
        if self._secret is None:
            unset = f"no API key (${self.key_env} is unset)"
            return f"{unset}: sending {host} the placeholder {NO_KEY_PLACEHOLDER!r} instead"
        from_env = os.environ.get(self.key_env) == self._secret
        where = f"${self.key_env}" if from_env else f"{self.key_env} in .env"
        return f"sending the API key from {where} to {host}"

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Fails within `timeout_s` when the server's host cannot be reached (before any RL).

        Raises:
            DiscoverError: the name does not resolve, or the connection is refused or times out.
        """
        import socket

        url = self.client.base_url
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as e:
            raise DiscoverError(
                f"cannot reach the model server {host}:{port} ({os_reason(e)}); check --base-url "
                "(or OPENAI_BASE_URL) and that the server is running"
            ) from None

    def _redact(self, text: str) -> str:
        """`text` without the key (a server may echo it in an error or a reply)."""
        return text.replace(self._secret, "***") if self._secret else text

    def complete(self, messages: list[dict[str, str]], turn: int) -> Reply:
        import openai

        del turn
        errors: list[str] = []
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "n": 1}
        if self.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(_backoff(attempt - 1, last))
            try:
                completion = self.client.chat.completions.create(**kwargs)
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APITimeoutError,
                openai.APIConnectionError,
                openai.APIResponseValidationError,
                json.JSONDecodeError,  # a 200 whose body is not JSON
            ) as e:
                errors.append(self._redact(_describe(e)))
                last = e
                continue
            except openai.APIStatusError as e:
                hint = f"; check ${self.key_env}" if e.status_code in (401, 403) else ""
                raise LLMError(
                    f"the model server refused the request: {self._redact(_describe(e))}{hint}"
                ) from None
            content, usage = _unpack(completion)
            if content is not None:
                content = self._redact(content)
                return Reply(content, usage, time.perf_counter() - t0, attempt + 1, errors)
            errors.append("the response had no message")
            last = None
        raise LLMError(
            f"no answer from the model after {self.retries + 1} tries (last: {errors[-1]}); "
            "the run is saved: run the same command with --resume to continue"
        )


def _describe(e: Exception) -> str:
    status = getattr(e, "status_code", None)
    name = type(e).__name__
    msg = " ".join(str(getattr(e, "message", None) or e).split())[:300]
    if isinstance(e, json.JSONDecodeError):
        msg = f"the response body is not JSON ({msg})"
    return f"{status} {name}: {msg}" if status else f"{name}: {msg}"


def _unpack(completion: Any) -> tuple[str | None, dict[str, Any]]:
    usage = {}
    if getattr(completion, "usage", None) is not None:
        u = completion.usage
        usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
    choices = getattr(completion, "choices", None) or []
    if not choices or choices[0].message is None:
        return None, usage
    return choices[0].message.content or "", usage


class ReplayChat:
    """Serves the assistant replies of a recorded run, by turn (no model, no key)."""

    def __init__(self, replies: dict[int, str], source: str) -> None:
        self.replies, self.source = replies, source

    def complete(self, messages: list[dict[str, str]], turn: int) -> Reply:
        del messages
        if turn not in self.replies:
            raise ReplayExhausted(turn)
        return Reply(self.replies[turn], {}, 0.0, 0, [], replayed=True)


class ReplayExhausted(Exception):
    """The recording has no reply for this turn (the replay ends normally)."""


def load_replay(path: str | Path) -> ReplayChat:
    """Reads the replies of a `conversation.json` (or a plain JSON list of chat messages).

    Raises:
        ConfigError: the file is missing or holds no assistant replies.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the replay file {path}: {e}") from None
    replies: dict[int, str] = {}
    if isinstance(data, dict) and isinstance(data.get("archive"), list):
        for entry in data["archive"]:
            if entry.get("turn", 0) > 0 and isinstance(entry.get("reply"), str):
                replies[int(entry["turn"])] = entry["reply"]
    else:
        messages = data.get("messages") if isinstance(data, dict) else data
        if isinstance(messages, list):
            assistant = [
                m["content"]
                for m in messages
                if isinstance(m, dict) and m.get("role") == "assistant"
            ]
            replies = {i + 1: c or "" for i, c in enumerate(assistant)}
    if not replies:
        raise ConfigError(
            f"{path} holds no recorded replies (expected a metarl conversation.json or a JSON "
            "list of chat messages)"
        )
    return ReplayChat(replies, str(path))
