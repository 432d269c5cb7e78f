"""`distil`: the resumable host loop of black-box distillation, with checkpoint selection.

For each learning rate of the sweep, a fresh student (same init for every rate) is regressed
on the teacher for `epochs x iters` Adam steps (`fit.py`). After every `eval_every` epochs
(and the last) the student is written to the run dir and scored (`scoring.py`: mean final RL
return on the envs); the output artefact is the best-scoring checkpoint over the whole sweep
(ties: the lower held-out loss), not the last one. With `num_runs = 0` the held-out loss alone
selects. The state is checkpointed atomically after every epoch (`rundir.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from metarl_cli import seeds
from metarl_cli.errors import Interrupted, MetarlError
from metarl_cli.meta.distil.plan import DistilPlan
from metarl_cli.meta.distil.rundir import SweepState
from metarl_cli.meta.distil.scoring import Scorer


@dataclass
class DistilResult:
    """The written artefact's manifest and the final state (sweep curves, chosen checkpoint)."""

    manifest: Any
    state: SweepState


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(x)


def _rank(rec: dict[str, Any], by_rl: bool) -> tuple[float, ...]:
    """Sort key of a checkpoint (higher is better): RL score, then lower held-out loss."""
    loss = -rec["test_loss"]
    if not by_rl:
        return (loss,)
    return (rec["rl_score"] if _finite(rec["rl_score"]) else -math.inf, loss)


def _np_tree(tree: Any) -> Any:
    import jax

    return jax.tree.map(np.asarray, tree)


def _manifest(plan: DistilPlan, *, generation: int, config: dict, notes: str, summary=None):
    from metarl_cli.learned.io import learned_manifest

    return learned_manifest(
        plan.algorithm,
        "distil",
        config,
        architecture=plan.cfg.student_architecture,
        training_envs=plan.teacher_manifest.training_envs,
        generation=generation,
        fitness_summary=summary,
        parent_digest=plan.cfg.teacher_digest,
        notes=notes,
    )


def distil(
    plan: DistilPlan,
    *,
    scorer: Scorer | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> DistilResult:
    """Runs the planned distillation and writes the selected checkpoint as the artefact.

    Args:
        plan: from `plan_distil`.
        scorer: scores a checkpoint for selection (default: `RLScorer` on the plan's envs when
            `num_runs > 0`, else none and the held-out loss selects); see `scoring.Scorer`.
        on_event: `on_event(name, info)` for progress: "building", "teacher" (its score),
            "steps" (lr_index, epoch, steps done), "epoch" (the epoch's record), "done".

    Raises:
        Interrupted: on Ctrl-C (the last completed epoch is checkpointed).
        MetarlError: every learning rate diverged before a finite checkpoint.
    """
    run = _Distillation(plan, scorer, on_event or (lambda name, info: None))
    run.score_teacher()
    try:
        for i in range(run.state.lr_index, len(run.cfg.lrs)):
            run.sweep_lr(i)
    except KeyboardInterrupt:
        raise Interrupted(
            f"epoch {run.state.epoch} of learning rate {run.state.lr_index}",
            f"checkpoint in {run.rd.path}",
        ) from None
    return run.finish()


class _Distillation:
    """One session of a distillation run: the fitter, the teacher, the sweep state."""

    def __init__(
        self,
        plan: DistilPlan,
        scorer: Scorer | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        import jax
        import jax.numpy as jnp

        from metarl_cli.meta.distil.fit import Fitter, make_optimiser
        from metarl_cli.meta.distil.problems import make_problem
        from metarl_cli.meta.distil.scoring import RLScorer

        cfg, rd = plan.cfg, plan.run_dir
        self.plan, self.cfg, self.rd, self.emit = plan, cfg, rd, emit
        self.t_session = time.perf_counter()
        rd.prepare(resume=plan.resume, force=plan.force)
        rd.write_config(cfg)
        emit("building", {"resume_from": plan.resume_from})

        problem = make_problem(
            plan.algorithm,
            target=cfg.target,
            clip_eps=cfg.clip_eps,
            seq_len=cfg.seq_len,
            schedule=cfg.schedule,
        )
        self.t_arch, self.s_arch = cfg.teacher_architecture, cfg.student_architecture
        self.fitter = Fitter(
            problem,
            tuple(sorted(self.t_arch.items())),
            tuple(sorted(self.s_arch.items())),
            cfg.batch_size,
        )
        optimiser = make_optimiser(cfg.total_steps)
        root = jax.random.key(cfg.seed)
        k_init, self.k_data, k_test = (jax.random.fold_in(root, i) for i in (1, 2, 3))
        self.teacher = jax.tree.map(jnp.asarray, plan.teacher_theta)
        self.template = problem.init_student(k_init, self.s_arch)
        self.state = (
            rd.load(cfg, self.template, optimiser.init(self.template))
            if plan.resume
            else SweepState()
        )
        rd.truncate_metrics(self.state.lr_index, self.state.epoch)
        self.held = self.fitter.held_out(self.teacher, k_test, cfg.test_size)
        if scorer is None and cfg.num_runs > 0:
            scorer = RLScorer(plan.algorithm, plan.train_configs, cfg.num_runs, cfg.seed)
        self.scorer = scorer
        self.by_rl = scorer is not None
        self.base_wall = self.state.wall_s

    def score_teacher(self) -> None:
        if self.scorer is not None and self.state.teacher_score is None:
            self.emit("scoring teacher", {})
            self.state.teacher_score = self.scorer(_np_tree(self.teacher), self.t_arch)
            self.emit("teacher", self.state.teacher_score)

    def sweep_lr(self, i: int) -> None:
        """Runs (or continues) learning rate `i` until its last epoch or a divergence."""
        from metarl_cli.meta.distil.fit import make_optimiser

        cfg, state = self.cfg, self.state
        lr = cfg.lrs[i]
        optimiser = make_optimiser(cfg.total_steps, min(cfg.lr_end / lr, 1.0))
        if state.epoch == 0 or state.params is None:
            params, opt_state = self.template, optimiser.init(self.template)
            state.sweep = [*state.sweep[:i], {"lr": lr, "curve": [], "diverged": False}]
        else:
            params, opt_state = state.params, state.opt_state
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            params, opt_state, diverged = self.epoch(i, epoch, optimiser, params, opt_state)
            if diverged:
                break

    def epoch(
        self, i: int, epoch: int, optimiser: Any, params: Any, opt_state: Any
    ) -> tuple[Any, Any, bool]:
        """Trains one epoch, checkpoints and scores it when due, and saves the sweep state."""
        from metarl_cli.meta.distil.fit import run_epoch

        cfg, emit, lr = self.cfg, self.emit, self.cfg.lrs[i]
        t0 = time.perf_counter()

        def steps(done: int) -> None:
            emit("steps", {"lr_index": i, "epoch": epoch, "done": done})

        params, opt_state, train_loss = run_epoch(
            self.fitter, optimiser, lr, params, opt_state, self.teacher, self.k_data,
            (epoch - 1) * cfg.iters, cfg.iters, on_chunk=steps,
        )  # fmt: skip
        mse, rel = (float(x) for x in self.fitter.test(params, *self.held))
        epoch_s = time.perf_counter() - t0
        diverged = not (math.isfinite(mse) and math.isfinite(train_loss))
        rec = {
            "epoch": epoch,
            "train_loss": train_loss,
            "test_loss": mse,
            "rel_l2": rel,
            "rl_score": None,
            "per_env": None,
            "checkpoint": False,
        }
        if not diverged and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            self.checkpoint(i, epoch, params, rec)
        self.commit(i, epoch, rec, diverged, epoch_s, params, opt_state)
        return params, opt_state, diverged

    def checkpoint(self, i: int, epoch: int, params: Any, rec: dict[str, Any]) -> None:
        """Writes the student as a periodic artefact, scores it and keeps it if it is best."""
        from metarl_cli.artefacts import save_artefact

        state, lr = self.state, self.cfg.lrs[i]
        mse, rel = rec["test_loss"], rec["rel_l2"]
        rec["checkpoint"] = True
        tree = _np_tree(params)
        save_artefact(
            self.rd.periodic(i, epoch),
            tree,
            _manifest(
                self.plan,
                generation=epoch,
                config={"lr": lr, "epoch": epoch, "test_loss": mse, "rel_l2": rel},
                notes=f"distillation checkpoint: lr {lr}, epoch {epoch}",
            ),
            force=True,
        )
        if self.scorer is not None:
            self.emit("scoring", {"lr_index": i, "epoch": epoch})
            rec.update(self.scorer(tree, self.s_arch))
            rec["rl_score"] = rec.pop("score")
        cand = {"lr_index": i, "lr": lr, **rec}
        if state.best is None or _rank(cand, self.by_rl) > _rank(state.best, self.by_rl):
            state.best, state.best_params = cand, tree

    def commit(
        self,
        i: int,
        epoch: int,
        rec: dict[str, Any],
        diverged: bool,
        epoch_s: float,
        params: Any,
        opt_state: Any,
    ) -> None:
        """Records the epoch in the sweep state, the metrics and the checkpoint."""
        cfg, state, lr = self.cfg, self.state, self.cfg.lrs[i]
        state.sweep[i]["curve"].append(rec)
        state.sweep[i]["diverged"] = diverged
        done = diverged or epoch == cfg.epochs
        state.lr_index, state.epoch = (i + 1, 0) if done else (i, epoch)
        state.params, state.opt_state = (None, None) if done else (params, opt_state)
        state.wall_s = self.base_wall + time.perf_counter() - self.t_session
        record = {
            "lr_index": i,
            "lr": lr,
            **rec,
            "epoch_s": epoch_s,
            "steps_per_s": cfg.iters / max(epoch_s, 1e-9),
            "best": state.best and {k: state.best[k] for k in ("lr", "epoch")},
            "wall_s": state.wall_s,
        }
        self.rd.append_metrics({**record, "epoch": epoch, "lr_index": i})
        self.rd.save(cfg, state)
        self.emit("epoch", record)

    def finish(self) -> DistilResult:
        """Writes the best checkpoint of the sweep as the output artefact."""
        from metarl_cli.artefacts import save_artefact

        cfg, state = self.cfg, self.state
        if state.best is None:
            raise MetarlError(
                f"every learning rate diverged before a finite checkpoint ({cfg.lrs}); pass a "
                "smaller --lr"
            )
        best = state.best
        chosen_by = "rl_score" if self.by_rl and _finite(best["rl_score"]) else "test_loss"
        teacher_score = (state.teacher_score or {}).get("score")
        summary = {
            k: float(v)
            for k, v in {
                "rl_score": best["rl_score"],
                "teacher_rl_score": teacher_score,
                "test_loss": best["test_loss"],
                "rel_l2": best["rel_l2"],
            }.items()
            if v is not None
        }
        manifest = save_artefact(
            self.plan.output,
            state.best_params,
            _manifest(
                self.plan,
                generation=best["epoch"],
                config=self.output_config(chosen_by),
                summary=summary,
                notes=(
                    f"{cfg.size} distillation of {cfg.teacher}: lr {best['lr']}, epoch "
                    f"{best['epoch']}, selected by {chosen_by.replace('_', ' ')}"
                ),
            ),
            force=self.plan.force,
        )
        self.emit("done", {"seconds": state.wall_s, "output": str(self.plan.output)})
        return DistilResult(manifest, state)

    def output_config(self, chosen_by: str) -> dict[str, Any]:
        """The output manifest's meta-learner config: the run's, the sweep, the choice."""
        from metarl_cli.meta.distil.problems import num_params
        from metarl_cli.meta.distil.scoring import RLScorer

        state, scorer = self.state, self.scorer
        best = state.best
        assert best is not None
        config = {
            **self.cfg.model_dump(mode="json"),
            "teacher_params": num_params(self.teacher),
            "student_params": num_params(self.template),
            "sweep": [_sweep_summary(s, self.by_rl) for s in state.sweep],
            "chosen": {
                "lr": best["lr"],
                "lr_index": best["lr_index"],
                "epoch": best["epoch"],
                "rl_score": best["rl_score"],
                "per_env": best["per_env"],
                "test_loss": best["test_loss"],
                "rel_l2": best["rel_l2"],
                "by": chosen_by,
            },
            "teacher_rl_score": state.teacher_score,
            "wall_s": round(state.wall_s, 3),
        }
        if isinstance(scorer, RLScorer):
            # Env steps of the RL evaluations that chose the checkpoint (the teacher's
            # included), over all sessions: each scoring runs num_runs PPO runs on every env.
            scored = sum(c["checkpoint"] for s in state.sweep for c in s["curve"])
            scored += state.teacher_score is not None
            config["eval_env_steps"] = scored * scorer.steps_per_score
            config["selection_seeds"] = seeds.record(seeds.SELECTION, scorer.seed, scorer.num_runs)
        return config


def _sweep_summary(s: dict[str, Any], by_rl: bool) -> dict[str, Any]:
    """One learning rate: its final losses, its best checkpoint and its selection curve."""
    curve = s["curve"]
    evaluated = [c for c in curve if c["checkpoint"]]
    best = max(evaluated, key=lambda c: _rank(c, by_rl)) if evaluated else None
    last = curve[-1] if curve else None
    return {
        "lr": s["lr"],
        "diverged": s["diverged"],
        "final_test_loss": last and last["test_loss"],
        "final_rel_l2": last and last["rel_l2"],
        "best_epoch": best and best["epoch"],
        "best_rl_score": best and best["rl_score"],
        # [(epoch, held-out loss, RL score or None)] for every epoch
        "selection_curve": [[c["epoch"], c["test_loss"], c["rl_score"]] for c in curve],
    }
