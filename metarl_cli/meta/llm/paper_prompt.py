"""Supplement D's prompts as the paper prints them (`metarl discover --prompt paper`).

The text is the paper's, with the PDF's line breaks joined and its curly quotes straightened.
Two edits, both needed for the prompt to work at all, and nothing else:

* the examples call `jnp.clip(x, lo, hi)` positionally: JAX >= 0.7 removed the `a_min`/`a_max`
  keywords the paper's examples use, so a model copying them would fail every candidate;
* the feed-forward OPEN prompt prints two unformatted placeholders, `{application}` and
  `{lr_desc}`; they are filled with the No Features prompt's words ("separately to the
  parameters" and its note on `lr`).

Kept as printed, on purpose: the momentum formula `m_x_y = (x.y) * g + (1-x.y) * m_x_y`, which
is the inverse of what the code computes (`m <- b * m + (1 - b) * g`, see `prompts.py`), the
missing description of the fitness's environments and normaliser, and the absence of any
sandbox rules. Which prompt a kernel was found with is recorded in its manifest.
"""

from __future__ import annotations

import json
from typing import Any

_INTRO = (
    "You are a machine learning researcher who is designing a new {what} for reinforcement "
    'learning. When you respond, output a JSON where the first key ("thought") corresponds to '
    'your thought process when designing the next function. The second key ("name") '
    'corresponds to the name of your next function. Finally, the last key ("code") corresponds '
    "to the exact python code that you would like to try. Here is an example:"
)
_FAMILIAR = (
    "You are deeply familiar with {familiar} for reinforcement learning from the literature. Be "
    "creative and reference prior literature when possible."
)
_INTERFACE = (
    "You must use the exact function interface used above. Your function should return {ret}. "
    "Feel free to define extra hyperparameters within your function as constants. Do not make "
    "them attributes of self. You may use whichever jax functions you want, including logic "
    "functions if appropriate."
)
_LR = " Note that 'lr' is tuned per environment, and is annealed over the course of training."
_GOAL = (
    "The user will then return to you a fitness that corresponds to the performance of the "
    "resulting model on a downstream task. Your goal is to maximize performance."
)
_DRIFT = (
    "Drift functions use the ratio and advantage to limit changes to the policy after updating. "
    "To be a valid drift function, the function must be non-negative everywhere, zero at "
    "identity (when r=1) and have a gradient of zero with respect to r at r=1. It can be easier "
    "to guarantee this by using functions of (r-1) or jnp.log(r).\n"
    "'r' is the ratio of the new policy to a reference policy, which is the previous policy in "
    "this case.\n"
    "'A' is the GAE advantage estimate of the policy.\n"
    "'epsilon' is the clip epsilon value used in PPO.\n"
    "You may also use branching functions such as jax.lax.cond or take the maximum of two values."
)
_OPTIMISER = (
    "Optimisation algorithms use the gradient, and other inputs, to calculate updates to the "
    "parameters of a neural network."
)
_RECURRENT_EXTRA = (
    " Here, we provide a number of additional inputs which have previously been found to be "
    "helpful in optimisation for reinforcement learning. You may choose to use as many or as few "
    "inputs as you would like."
)
_BASIC_INPUTS = (
    "'p' refers to the current value of the parameter being optimised.\n"
    "'g' refers to the gradient of the loss function with respect to the parameter.\n"
    "'m_x_y' refers to the historic momentum of the gradient. This is calculated as "
    "m_x_y = (x.y) * g + (1-x.y) * m_x_y."
)
_OPEN_INPUTS = (
    "\n'dorm' refers to the dormancy of the neuron which the parameter is going into.\n"
    "'l_p' is the layer proportion, and refers to how deep a parameter is through a neural "
    "network. It starts at 0. in the first layer, and increases to 1. in the final layer.\n"
    "'b_p' is the batch proportion, and refers to how far through the total number of epochs "
    "with a fixed batch of data training is.\n"
    "'t_p' is the training proportion, and refers to how far training is through the full "
    "horizon.\n"
    "'dorm' is the dormancy, and refers to the how much of a layer's activation comes from a "
    "specific neuron. It is measured between 0. and the number of neurons in a layer.\n"
    "'rand' is a random, normally distributed value, which can be applied for stochasticity."
)
_RECURRENT_INPUTS = (
    "\n'iteration' is the total iteration count.\n"
    "'var' is a recurrent variable which is passed between training iterations. You may use it "
    "to store any information which might be useful for historical conditioning."
)

# The examples of Supplement D: (thought, name, body) by the interface's kind.
_EXAMPLES = {
    "drift": (
        "Based on the previous outputs, I should try to tanh the function.",
        "tanh_clip",
        "    ratio_clip = jnp.tanh(ratio - jnp.clip(ratio, 1-epsilon, 1+epsilon))\n"
        "    ratio_adv = ratio_clip * advantage\n"
        "    drift = nn.relu(ratio_adv)\n"
        "    return drift",
    ),
    "basic": (
        "Based on the previous outputs, I should try replacing the gradient with m_0_99 to "
        "incorporate momentum.",
        "SGD_mom_0_99",
        "    update = m_0_99 * lr\n    return update",
    ),
    "features": (
        "Based on the previous outputs, I should try dividing the gradient by dormancy to give "
        "larger updates to more dormant neurons.",
        "sgd_dorm",
        "    update = g * lr / (dorm)\n    return update",
    ),
    "recurrent": (
        "Based on the previous outputs, I will try making the update slightly stochastic.",
        "Adam_rand",
        "    var = (1-0.999) * jnp.square(g) + 0.999 * var\n"
        "    var_hat = var / (1-0.999**iteration)\n"
        "    m_hat = m_0_9 / (1-0.9**iteration)\n"
        "    adam = m_hat / jnp.sqrt(var_hat + 1e-8)\n"
        "    adam = adam + rand * 0.0001\n"
        "    update = adam * lr\n"
        "    return update, var",
    ),
}


def kind(algorithm: Any) -> str:
    """Which of Supplement D's four prompts fits `algorithm`'s code interface."""
    params = algorithm.code_parameters
    if algorithm.slot == "drift":
        return "drift"
    if params[-1] == "var":
        return "recurrent"
    return "features" if "dorm" in params else "basic"


def system_prompt(algorithm: Any, signature: Any) -> str:
    """Supplement D's prompt for `algorithm` (`signature(name, params, pair)` builds the
    example's `def` line as `prompts.signature` does)."""
    k = kind(algorithm)
    thought, name, body = _EXAMPLES[k]
    code = signature(name, algorithm.code_parameters, k == "recurrent") + body
    example = json.dumps({"thought": thought, "name": name, "code": code}, indent=1)
    if k == "drift":
        what, familiar = "drift function", "drift functions"
        ret = "only the function value, which will be applied to limit large changes to the policy"
        text = _DRIFT
    else:
        what = "optimisation algorithm"
        familiar = "optimisation" if k == "recurrent" else "optimisation algorithms"
        ret = (
            "the update value, which will be applied separately to the parameters, and the var "
            "value, which will be used as a momentum variable between iterations"
            if k == "recurrent"
            else "only the function value, which will be applied separately to the parameters"
        )
        text = (
            _OPTIMISER
            + (_RECURRENT_EXTRA if k == "recurrent" else "")
            + "\n"
            + _BASIC_INPUTS
            + (_OPEN_INPUTS if k in ("features", "recurrent") else "")
            + (_RECURRENT_INPUTS if k == "recurrent" else "")
        )
    interface = _INTERFACE.format(ret=ret) + ("" if k == "drift" else _LR)
    parts = [
        _INTRO.format(what=what),
        example,
        _FAMILIAR.format(familiar=familiar),
        interface,
        text,
        _GOAL,
    ]
    return "\n".join(parts)


def results_message(results: list[dict[str, Any]]) -> str:
    """The first user message as Supplement D ends: the results so far, key `Fitness`."""
    table = [{"name": r["name"], "code": r["code"], "Fitness": r["fitness"]} for r in results]
    body = json.dumps(table[0] if len(table) == 1 else table, indent=1)
    return f"Here are some results we've obtained:\n{body}"


def fitness_message(fitness: float) -> str:
    """Feedback after an evaluated candidate: the fitness only."""
    return f"Fitness: {fitness}."
