"""LLM proposal of code kernels: `metarl discover` (paper §4.5, Supplements D and E).

`client` talks to any OpenAI-compatible chat-completions server (or replays a recording),
`prompts` builds Supplement D's prompts from an algorithm's code interface and parses replies,
`sandbox`/`sandbox_runner`/`confine` validate and evaluate every candidate in a confined child
process, `state` saves the conversation and archive, and `loop` runs it all. Names are imported
lazily, so importing this package does not import JAX or openai.
"""

from __future__ import annotations

__all__ = ["DiscoverConfig", "DiscoverError", "discover", "plan_discover"]


def __getattr__(name: str):
    if name == "DiscoverConfig":
        from metarl_cli.meta.llm.config import DiscoverConfig

        return DiscoverConfig
    if name in ("DiscoverError", "discover", "plan_discover"):
        from metarl_cli.meta.llm import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'metarl_cli.meta.llm' has no attribute {name!r}")
