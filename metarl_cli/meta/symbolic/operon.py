"""The Operon backend (`pyoperon`, C++ genetic programming, offline); see `backends.py`.

Driven through pyoperon's low-level API rather than the scikit-learn wrapper, for three things
the wrapper lacks: a Python objective (LPO's losses on the corrected drift, see `search.py`), a
population that survives a process restart, and a per-round batch. Warm start is Operon's own
(`RestoreIndividuals` + `Run(..., warm_start=True)`; restored programs are re-evaluated on the
new batch). Constants are tuned by Levenberg-Marquardt local search against the target column.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from metarl_cli.errors import ConfigError
from metarl_cli.meta.symbolic.backends import (
    BAD_LOSS,
    OPERON_NAMES,
    OPERON_PRIMITIVES,
    Candidate,
    FitTask,
    Objective,
    RoundInterrupted,
    RoundResult,
    SearchSettings,
)
from metarl_cli.meta.symbolic.export import Program


class _Data:
    """An Operon dataset with its backing array (pyoperon does not keep the array alive: a
    dataset over a freed temporary reads garbage)."""

    def __init__(self, op: Any, matrix: np.ndarray) -> None:
        self.array = np.asfortranarray(matrix, dtype=np.float32)
        self.dataset = op.Dataset(self.array)
        self.range = op.Range(0, self.array.shape[0])
        variables = sorted(self.dataset.Variables, key=lambda v: v.Index)
        self.hashes = [v.Hash for v in variables]


class OperonBackend:
    """Operon through pyoperon's low-level API (module doc)."""

    name = "operon"

    def __init__(self) -> None:
        import pyoperon

        self.op = pyoperon
        self.dtable = pyoperon.DispatchTable()

    def version(self) -> str:
        from importlib import metadata

        return metadata.version("pyoperon")

    # The population as JSON: one list of [node type, value, variable column or -1, arity]
    # per program, in Operon's postfix order.
    def _encode(self, tree: Any, hashes: Sequence[int]) -> list[list[Any]]:
        index = {h: i for i, h in enumerate(hashes)}
        return [
            [n.Type.name, float(n.Value), index.get(n.HashValue, -1) if n.IsVariable else -1,
             int(n.Arity)]
            for n in tree.Nodes
        ]  # fmt: skip

    def _decode(self, nodes: list[list[Any]], hashes: Sequence[int]) -> Any:
        op = self.op
        out = []
        for type_name, value, column, arity in nodes:
            node_type = getattr(op.NodeType, type_name)
            node = op.Node(node_type, hashes[column]) if column >= 0 else op.Node(node_type)
            node.Value = float(value)
            node.Arity = int(arity)
            out.append(node)
        return op.Tree(out).UpdateNodes()

    def program(self, tree: Any, hashes: Sequence[int], names: Sequence[str]) -> Program:
        """Operon's postfix tree as a program (the first operand is the child nearest its
        parent; variables carry a weight)."""
        column = {h: names[i] for i, h in enumerate(hashes)}
        stack: list[Program] = []
        for node in tree.Nodes:
            if node.IsVariable:
                var = ("var", column[node.HashValue])
                w = float(node.Value)
                stack.append(var if w == 1.0 else ("mul", ("const", w), var))
            elif node.IsConstant:
                stack.append(("const", float(node.Value)))
            else:
                kind = OPERON_NAMES.get(node.Name)
                if kind is None:
                    raise ValueError(f"operon node {node.Name!r} has no symbolic equivalent")
                args = [stack.pop() for _ in range(int(node.Arity))]
                stack.append((kind, *args))
        if len(stack) != 1:
            raise ValueError("malformed operon tree")
        return stack[0]

    def evaluate(self, tree: Any, matrix: np.ndarray) -> np.ndarray:
        data = _Data(self.op, matrix)
        return np.array(self.op.Evaluate(self.dtable, tree, data.dataset, data.range), np.float32)

    def fit_round(
        self,
        task: FitTask,
        settings: SearchSettings,
        population: list[Any] | None,
        *,
        seed: int,
        on_generation: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> RoundResult:
        """Runs `settings.generations` generations from `population` (None: a fresh one).

        Raises:
            RoundInterrupted: `should_stop()` became true (checked every generation); the
                round's work is discarded.
        """
        op = self.op
        train, problem, inputs = self._problem(task, settings.operators)
        keep: list[Any] = [train, problem]  # what pyoperon uses but does not keep alive
        evaluator = self._evaluator(task, problem, keep)
        gp = self._algorithm(settings, problem, evaluator, inputs, seed, keep)
        warm = population is not None
        if population is not None:
            self._restore(gp, population, settings, inputs)
        counter, stopped = [0], [False]
        callback = _generation_callback(evaluator, counter, stopped, on_generation, should_stop)
        self._run(gp, op.RandomGenerator(np.uint64(seed)), callback, settings.threads, warm,
                  stopped)  # fmt: skip
        if stopped[0]:
            del keep, gp
            raise RoundInterrupted("interrupted")
        individuals = list(gp.Individuals)
        new_population = [self._encode(ind.Genotype, inputs) for ind in individuals]
        parents = individuals[: settings.population]
        scaled = task.objective is None
        candidates = self._candidates(parents, train, inputs, task, scaled)
        evaluations = int(evaluator.CallCount)
        del keep, gp
        return RoundResult(new_population, candidates, counter[0], evaluations)

    def _problem(self, task: FitTask, operators: Sequence[str]) -> tuple[_Data, Any, list[int]]:
        """The training data (inputs, then the target column), the problem over it with the
        primitive set of `operators`, and the input variables' hashes."""
        op = self.op
        n, d = task.x.shape
        train = _Data(op, np.column_stack([task.x, task.y]))
        inputs = train.hashes[:d]
        target = max(train.dataset.Variables, key=lambda v: v.Index)
        problem = op.Problem(train.dataset)
        problem.TrainingRange = train.range
        problem.TestRange = op.Range(n - 1, n)
        problem.Target = target
        problem.InputHashes = inputs
        config = 0
        members = [OPERON_PRIMITIVES[o] for o in operators]
        for member in (*members, "Constant", "Variable"):
            config |= int(getattr(op.NodeType, member))
        problem.ConfigurePrimitiveSet(config)
        return train, problem, inputs

    def _evaluator(self, task: FitTask, problem: Any, keep: list[Any]) -> Any:
        """The L2 loss with linear scaling, or the task's Python objective; no budget."""
        op = self.op
        if task.objective is None:
            evaluator = op.Evaluator(problem, self.dtable, op.MSE(), True)
        else:
            evaluator = op.UserDefinedEvaluator(problem, self._python_loss(task.objective, keep))
        evaluator.Budget = 2**62
        keep.append(evaluator)
        return evaluator

    def _algorithm(
        self,
        settings: SearchSettings,
        problem: Any,
        evaluator: Any,
        inputs: list[int],
        seed: int,
        keep: list[Any],
    ) -> Any:
        """The genetic programming algorithm: tree creation, variation, selection."""
        op = self.op
        pset = problem.PrimitiveSet
        creator = op.BalancedTreeCreator(pset, inputs, 0.0)
        coeff_init = op.NormalCoefficientInitializer()
        coeff_init.ParameterizeDistribution(0, 1)
        keep += [pset, creator, coeff_init]
        generator, reinserter = self._offspring(
            settings, problem, pset, evaluator, creator, coeff_init, inputs, keep
        )
        initializer = op.UniformLengthTreeInitializer(creator)
        min_arity, _ = pset.FunctionArityLimits()
        initializer.ParameterizeDistribution(min_arity + 1, min(10, settings.max_size))
        initializer.MinDepth = 1
        initializer.MaxDepth = 1000
        keep.append(initializer)
        ga_config = op.GeneticAlgorithmConfig(
            generations=settings.generations,
            max_evaluations=2**62,
            local_iterations=settings.optimizer_iterations,
            population_size=settings.population,
            pool_size=settings.population,
            p_crossover=1.0,
            p_mutation=0.25,
            p_local=settings.local_search_probability,
            p_lamarck=1.0,
            epsilon=1e-10,
            seed=int(seed),
            max_time=2**31,
        )
        return op.GeneticProgrammingAlgorithm(
            ga_config, problem, initializer, coeff_init, generator, reinserter
        )

    def _offspring(
        self,
        settings: SearchSettings,
        problem: Any,
        pset: Any,
        evaluator: Any,
        creator: Any,
        coeff_init: Any,
        inputs: list[int],
        keep: list[Any],
    ) -> tuple[Any, Any]:
        """(offspring generator, reinserter): tournament selection, subtree crossover, seven
        mutations, Levenberg-Marquardt constant tuning; the best of parents and offspring stay."""
        op = self.op
        optimizer = op.LMOptimizer(self.dtable, problem, settings.optimizer_iterations, 0)
        comparison = op.SingleObjectiveComparison(0)
        selector = op.TournamentSelector(comparison)
        selector.TournamentSize = 5
        reinserter = op.KeepBestReinserter(comparison)
        crossover = op.SubtreeCrossover(0.9, settings.max_depth, settings.max_size)
        mutation = op.MultiMutation()
        one_point = op.NormalOnePointMutation()
        one_point.ParameterizeDistribution(0, 1)
        multi_point = op.NormalMultiPointMutation()
        multi_point.ParameterizeDistribution(0, 1)
        mutations = [
            one_point,
            multi_point,
            op.ChangeVariableMutation(inputs),
            op.ChangeFunctionMutation(pset),
            op.ReplaceSubtreeMutation(creator, coeff_init, settings.max_depth, settings.max_size),
            op.InsertSubtreeMutation(creator, coeff_init, settings.max_depth, settings.max_size),
            op.RemoveSubtreeMutation(pset),
        ]
        for m in mutations:
            mutation.Add(m, 1.0)
        coeff_optimizer = op.CoefficientOptimizer(optimizer)
        generator = op.BasicOffspringGenerator(
            evaluator, crossover, mutation, selector, selector, coeff_optimizer
        )
        keep += [optimizer, comparison, selector, reinserter, crossover, mutation]
        keep += [*mutations, coeff_optimizer, generator]
        return generator, reinserter

    def _restore(
        self, gp: Any, population: list[Any], settings: SearchSettings, inputs: list[int]
    ) -> None:
        """Warm start: the saved population (parents and offspring pool) into `gp`."""
        op = self.op
        if len(population) != 2 * settings.population:
            raise ConfigError(
                f"the saved population has {len(population)} programs, expected "
                f"{2 * settings.population} (population + offspring pool)"
            )
        individuals = []
        for nodes in population:
            ind = op.Individual(1)
            ind.Genotype = self._decode(nodes, inputs)
            individuals.append(ind)
        gp.RestoreIndividuals(op.IndividualCollection(individuals))
        gp.IsFitted = True

    @staticmethod
    def _run(gp: Any, rng: Any, callback: Any, threads: int, warm: bool, stopped: list) -> None:
        """`gp.Run` in a worker thread: the main thread keeps running Python, so a SIGINT
        handler (Ctrl-C) runs promptly instead of after the whole round; a KeyboardInterrupt
        here stops the search at the next generation and is then re-raised."""
        error: list[BaseException] = []

        def target() -> None:
            try:
                gp.Run(rng, callback, threads, warm)
            except BaseException as e:  # re-raised in the caller's thread
                error.append(e)

        worker = threading.Thread(target=target, name="operon", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.1)
        except KeyboardInterrupt:
            stopped[0] = True
            worker.join()
            raise
        if error:
            raise error[0]

    def _python_loss(self, objective: Objective, keep: list[Any]) -> Callable[..., list[float]]:
        op, dtable = self.op, self.dtable
        datas = {name: _Data(op, m) for name, m in objective.inputs.items()}
        keep.append(datas)

        def loss(rng: Any, individual: Any) -> list[float]:
            del rng
            tree = individual.Genotype
            outputs = {
                name: np.asarray(op.Evaluate(dtable, tree, data.dataset, data.range))
                for name, data in datas.items()
            }
            with np.errstate(all="ignore"):
                value = float(objective.loss(outputs))
            return [value if np.isfinite(value) and value < BAD_LOSS else BAD_LOSS]

        return loss

    def _candidates(self, parents, train: _Data, inputs, task: FitTask, scaled: bool):
        """Distinct programs, with Operon's linear scaling folded into the tree when the
        evaluator used it (as pyoperon's scikit-learn wrapper does)."""
        op = self.op
        seen: set[str] = set()
        out = []
        for ind in parents:
            tree = ind.Genotype
            length = int(tree.Length)  # the searched program, without the scaling nodes
            if scaled:
                pred = np.asarray(
                    op.Evaluate(self.dtable, tree, train.dataset, train.range), np.float32
                )
                if not np.all(np.isfinite(pred)):
                    continue
                a, b = op.FitLeastSquares(pred, task.y.astype(np.float32))
                if not (np.isfinite(a) and np.isfinite(b)):
                    continue
                nodes = list(tree.Nodes)
                if a != 1:
                    nodes += [op.Node.Constant(a), op.Node.Mul()]
                if b != 0:
                    nodes += [op.Node.Constant(b), op.Node.Add()]
                tree = op.Tree(nodes).UpdateNodes()
            names = {h: f"X{i + 1}" for i, h in enumerate(inputs)}
            text = op.InfixFormatter.Format(tree, names, 8)
            if text in seen:
                continue
            seen.add(text)
            try:
                program = self.program(tree, inputs, task.names)
            except ValueError:
                continue
            out.append(
                Candidate(
                    program=program,
                    complexity=length,
                    predict=functools.partial(self.evaluate, tree),
                    backend_text=text,
                )
            )
        return out


def _generation_callback(
    evaluator: Any,
    counter: list[int],
    stopped: list[bool],
    on_generation: Callable[[int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Callable[[], None]:
    """Operon's per-generation callback: counts generations into `counter`, reports them.

    Operon swallows exceptions raised in callbacks, so an interrupt is a flag (`stopped`) that
    ends the run by exhausting the evaluation budget at the next generation."""

    def callback() -> None:
        counter[0] += 1
        try:
            if stopped[0] or (should_stop is not None and should_stop()):
                stopped[0] = True
                evaluator.Budget = 0
            elif on_generation is not None:
                on_generation(counter[0])
        except Exception:  # a progress display must not break the search
            pass

    return callback
