"""The conversation with the model: prompts (Supplement D), feedback messages, reply parsing.

The system prompt follows Supplement D's wording, but is generated from the algorithm object:
the function interface from `code_parameters`, the glossary from `code_inputs`, the return
value from `code_output` and the results table from the warm start (`warm_start`, evaluated
first). Three departures from the paper's text, each a fix:

* the momentum is described as the code computes it, `m <- b * m + (1 - b) * g` (the
  original prompt said `m = b * g + (1 - b) * m`, the inverse);
* examples call `jnp.clip(x, lo, hi)` positionally (JAX >= 0.7 removed `a_min`/`a_max`);
* a paragraph says what the sandbox allows and how candidates are checked, so a rejection
  message refers to rules the model was told.

Feedback messages keep the paper's form (`Fitness: 0.97.`, `Code not valid. Error: ...`).

`style="paper"` (`metarl discover --prompt paper`) uses Supplement D as printed instead
(`paper_prompt.py`): no environments or normaliser named, no sandbox paragraph, the paper's
momentum formula, and `Fitness: X.` as the only feedback after an evaluated candidate. That is
the setting that reproduces the paper; the default `improved` prompt is this module's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_SCALARS = ("lr", "epsilon", "iteration")

_DRIFT_TEXT = (
    "Drift functions use the ratio and advantage to limit changes to the policy after updating. "
    "To be a valid drift function, the function must be non-negative everywhere, zero at "
    "identity (when r=1) and have a gradient of zero with respect to r at r=1. It can be easier "
    "to guarantee this by using functions of (r-1) or jnp.log(r). These three conditions are "
    "checked before training, and a function that fails them is rejected. You may also use "
    "branching functions such as jax.lax.cond or take the maximum of two values."
)
_OPTIMISER_TEXT = (
    "Optimisation algorithms use the gradient, and other inputs, to calculate updates to the "
    "parameters of a neural network."
)
_RECURRENT_TEXT = (
    " Here, we provide a number of additional inputs which have previously been found to be "
    "helpful in optimisation for reinforcement learning. You may choose to use as many or as few "
    "inputs as you would like."
)
_SANDBOX_TEXT = (
    "Your code runs in a sandbox: write exactly one function; you may import only jax, numpy and "
    "math (jnp, nn = jax.nn, lax, np and math are already defined); there is no file, network "
    "or system access, and names starting with an underscore are not allowed. The array inputs "
    "are 1-D arrays with one entry per {unit}, and the function is compiled with jax.jit, so it "
    "must work elementwise on arrays and must not use Python if/and/or on array values (use "
    "jnp.where, jnp.maximum, jax.lax.select). Before training, it is called on sample inputs and "
    "must return finite values of the right shape."
)


def signature(name: str, parameters: tuple[str, ...], returns_pair: bool) -> str:
    """`def name(\\n    p: jnp.ndarray,\\n ...\\n) -> jnp.ndarray:` as in Supplement D."""
    lines = [f"    {p}: {'float' if p in _SCALARS else 'jnp.ndarray'}," for p in parameters]
    ret = "tuple[jnp.ndarray, jnp.ndarray]" if returns_pair else "jnp.ndarray"
    return f"def {name}(\n" + "\n".join(lines) + f"\n) -> {ret}:\n"


def _returns_pair(algorithm: Any) -> bool:
    return algorithm.code_parameters[-1] == "var"


def example(algorithm: Any) -> dict[str, str]:
    """The worked example of the prompt as a reply object (`algorithm.prompt_example`, whose
    signature is generated here)."""
    if algorithm.prompt_example is not None:
        name, thought, body = algorithm.prompt_example
        code = signature(name, algorithm.code_parameters, _returns_pair(algorithm)) + body
    else:  # an algorithm without a paper example: its reference, renamed
        name, thought = "reference", "Start from the reference implementation."
        code = algorithm.warm_start
    return {"thought": thought, "name": name, "code": code}


STYLES = ("improved", "paper")


def system_prompt(algorithm: Any, fitness_text: str, style: str = "improved") -> str:
    """Supplement D's prompt for `algorithm`, generated from its code interface (`style`
    "paper": as printed, `paper_prompt.py`)."""
    if style == "paper":
        from metarl_cli.meta.llm import paper_prompt

        return paper_prompt.system_prompt(algorithm, signature)
    drift = algorithm.slot == "drift"
    what = "drift function" if drift else "optimisation algorithm"
    familiar = "drift functions" if drift else "optimisation algorithms"
    params = algorithm.code_parameters
    parts = [
        f"You are a machine learning researcher who is designing a new {what} for reinforcement "
        'learning. When you respond, output a JSON where the first key ("thought") corresponds '
        'to your thought process when designing the next function. The second key ("name") '
        'corresponds to the name of your next function. Finally, the last key ("code") '
        "corresponds to the exact python code that you would like to try. Here is an example:",
        json.dumps(example(algorithm), indent=1),
        f"You are deeply familiar with {familiar} for reinforcement learning from the "
        "literature. Be creative and reference prior literature when possible.",
        "You must use the exact function interface used above. Your function should return "
        f"{_output_text(algorithm)}. Feel free to define extra hyperparameters within your "
        "function as constants. Do not make them attributes of self. You may use whichever jax "
        "functions you want, including logic functions if appropriate."
        + (
            " Note that 'lr' is tuned per environment, and is annealed over the course of training."
            if "lr" in params
            else ""
        ),
        _DRIFT_TEXT if drift else _OPTIMISER_TEXT + (_RECURRENT_TEXT if "var" in params else ""),
        "\n".join(f"'{name}' is {meaning}." for name, meaning in algorithm.code_inputs.items()),
        _SANDBOX_TEXT.format(unit="sample" if drift else "parameter"),
        "The user will then return to you a fitness that corresponds to the performance of the "
        f"resulting model on a downstream task. {fitness_text} Your goal is to maximize "
        "performance.",
    ]
    return "\n\n".join(parts)


def _output_text(algorithm: Any) -> str:
    if algorithm.slot == "drift":
        return (
            "only the drift value, which will be applied to limit large changes to the policy "
            f"({algorithm.code_output})"
        )
    if _returns_pair(algorithm):
        return (
            "the update value, which will be applied separately to the parameters, and the var "
            "value, which will be used as a momentum variable between iterations "
            f"({algorithm.code_output})"
        )
    return (
        "only the update value, which will be applied separately to the parameters "
        f"({algorithm.code_output})"
    )


def results_message(results: list[dict[str, Any]], style: str = "improved") -> str:
    """The first user message: the archive so far (the warm start and its fitness)."""
    if style == "paper":
        from metarl_cli.meta.llm import paper_prompt

        return paper_prompt.results_message(results)
    table = [{"name": r["name"], "code": r["code"], "fitness": r["fitness"]} for r in results]
    return (
        f"Here are some results we've obtained: \n{json.dumps(table, indent=1)}\n\n"
        "Please generate the next one."
    )


def fitness_message(fitness: float, per_env: dict[str, float], style: str = "improved") -> str:
    if style == "paper":
        from metarl_cli.meta.llm import paper_prompt

        return paper_prompt.fitness_message(fitness)
    detail = ""
    if len(per_env) > 1:
        detail = " (" + ", ".join(f"{e}: {v:.4g}" for e, v in per_env.items()) + ")"
    return f"Fitness: {fitness}{detail}.\nPlease generate the next one."


def invalid_message(error: str) -> str:
    return f"Code not valid. Error:\n{error}\nPlease generate the next one."


def failed_message(error: str) -> str:
    return f"Training failed. Error:\n{error}\nPlease generate the next one."


def malformed_message(problem: str) -> str:
    return (
        f"Your reply could not be used: {problem}. Reply with only a JSON object with the keys "
        '"thought", "name" and "code" (all strings).\nPlease generate the next one.'
    )


@dataclass(frozen=True)
class Proposal:
    thought: str
    name: str
    code: str


class ReplyError(ValueError):
    """A reply that is not the JSON object asked for; the message says what is wrong."""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_reply(content: str | None) -> Proposal:
    """The model's reply as a `Proposal`.

    Accepts the object alone, inside a ```json fence, or after a short preamble; raw newlines
    inside strings are tolerated (models often emit them in "code").

    Raises:
        ReplyError: no JSON object, invalid JSON, or a missing or non-string key.
    """
    text = (content or "").strip()
    if not text:
        raise ReplyError("the reply was empty")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    start = text.find("{")
    if start < 0:
        raise ReplyError("the reply contains no JSON object")
    try:
        obj, _ = json.JSONDecoder(strict=False).raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise ReplyError(f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ReplyError("the JSON is not an object")
    missing = [k for k in ("thought", "name", "code") if k not in obj]
    if missing:
        raise ReplyError(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    wrong = [k for k in ("thought", "name", "code") if not isinstance(obj[k], str)]
    if wrong:
        raise ReplyError(f"{', '.join(wrong)} must be a string")
    if not obj["code"].strip():
        raise ReplyError('"code" is empty')
    return Proposal(obj["thought"].strip(), obj["name"].strip(), obj["code"])
