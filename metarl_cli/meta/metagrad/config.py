"""`metarl train metagrad`'s settings (frozen pydantic; the paper's Table 9 by default).

Where the sources disagree (`../reference/lpg-gridworlds-multihost.md` A5-A6) the default is
the setting that produced the paper's numbers or the correct maths, and the other is an option:

* `lpg_max_grad_norm`: None. Table 9 lists 0.55, but the reference code's Adam ignores it, so
  the paper's numbers come from unclipped meta-gradients.
* `value_baseline`: "trained". The reference code's value network never trains (its update is
  discarded), so its advantages are normalised GAE over a random critic; "frozen" reproduces
  that for parity runs.
* `agent_preset`: "paper" (Tables 3/7: MLP 32, Adam 1e-3); "tabular" is the reference code's
  `all_shortlife` agent (linear, SGD 40/4).
* `lifetime`: None takes the distribution's (250 updates for `all_shortlife`, as the code;
  Table 3's "T 3e6" is the evaluation lifetime).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MetagradConfig(BaseModel):
    """One meta-gradient run (module doc).

    Attributes:
        algo: the update-rule algorithm (its `slot` is "update_rule").
        envs: the level distribution meta-trained on (one env id).
        architecture: the update rule's sizes.
        num_agents: agents trained in parallel (each its own lifetime and level).
        meta_steps: meta-gradient steps.
        agent_updates: agent updates differentiated through per meta-step (K).
        num_envs, num_steps: each agent's rollout (envs x steps per update).
        lr: the meta-optimiser's Adam step size.
        num_mini_batches: sequential chunks the agents are split into (memory only).
        agent_preset: the agents' networks and optimisers (`rl/lpg_agent.AGENT_PRESETS`).
        value_baseline: train the meta-objective's value network, or keep it at its init.
        lpg_max_grad_norm: clip the meta-gradient's global norm (None: no clip).
        beta0..beta3: policy entropy, y entropy, pi_hat L2 and y_hat L2 weights.
        lifetime: agent updates per lifetime (None: the distribution's).
        remat: recompute each inner update in the backward pass (less memory, more time).
        save_every_k: meta-steps between checkpoints and evaluations.
        eval_runs: fresh agents trained for one lifetime to evaluate theta (0: none).
        seed: the run's seed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    algo: str
    envs: list[str] = Field(min_length=1, max_length=1)
    architecture: dict[str, int]
    num_agents: int = Field(512, gt=0)
    meta_steps: int = Field(5000, gt=0)
    agent_updates: int = Field(5, gt=0)
    num_envs: int = Field(64, gt=0)
    num_steps: int = Field(20, gt=0)
    lr: float = Field(1e-4, gt=0.0)
    num_mini_batches: int = Field(64, gt=0)
    agent_preset: Literal["paper", "tabular", "minatar"] = "paper"
    value_baseline: Literal["trained", "frozen"] = "trained"
    lpg_max_grad_norm: float | None = Field(None, gt=0.0)
    beta0: float = 5e-2
    beta1: float = 1e-3
    beta2: float = 5e-3
    beta3: float = 1e-3
    lifetime: int | None = Field(None, gt=0)
    remat: bool = True
    save_every_k: int = Field(50, gt=0)
    eval_runs: int = Field(8, ge=0)
    seed: int = Field(0, ge=0, lt=2**32)

    @model_validator(mode="after")
    def _check(self) -> MetagradConfig:
        if self.num_agents % self.num_mini_batches:
            raise ValueError(
                f"num_agents = {self.num_agents} does not divide into num_mini_batches = "
                f"{self.num_mini_batches}; change --num-agents or --num-mini-batches"
            )
        return self

    @property
    def env_id(self) -> str:
        """The one environment (level distribution)."""
        return self.envs[0]
