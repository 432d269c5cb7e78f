"""LLM proposal of code kernels: `metarl discover` (paper §4.5, Supplements D and E).

`client` talks to any OpenAI-compatible chat-completions server (or replays a recording),
`prompts` builds Supplement D's prompts from an algorithm's code interface and parses replies,
`sandbox`/`sandbox_runner`/`confine` validate and evaluate every candidate in a confined child
process, `state` saves the conversation and archive, and `loop` runs it all. Names are imported
lazily, so importing this package does not import JAX or openai.
"""

from __future__ import annotations

from metarl_cli._lazy import lazy_exports

__all__ = ["DiscoverConfig", "DiscoverError", "discover", "plan_discover"]

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(__all__, "metarl_cli.meta.llm.loop"),
        "DiscoverConfig": "metarl_cli.meta.llm.config",
    },
)
