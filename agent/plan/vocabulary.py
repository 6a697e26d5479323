"""The phrases the rules know, each as the kind of part of an idea it makes and what in a plan honours it.

Built from the same tables the offline planner reads (agent/plan/offline/words.py, priors.py) and the task
registry, so a phrase the planner learns is a phrase the coverage check (agent/plan/coverage.py) accounts for.
Each honour names the plan field that honours a part (`arms[dropout]`, `margin`, `budget.trials`) or is empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from agent.plan.offline import priors, words
from agent.plan.rules import normalize
from agent.schemas import CoverageKind, ExperimentPlan, Setting
from experiments import registry

Honour = Callable[[ExperimentPlan], str]  # the plan field that honours a part, or ""


@dataclass(frozen=True)
class Term:
    """A vocabulary entry: its phrases, the kind of part it makes, and how a plan honours it."""

    kind: CoverageKind
    phrases: tuple[str, ...]
    honours: Honour


def sets(canonical: str, value: Setting | None = None) -> Honour:
    """A hyperparameter the plan sets: in an arm, the shared search, a condition or a code change (with
    `value`: an arm or condition that fixes it to that value, or a search that offers it)."""

    def honours(plan: ExperimentPlan) -> str:
        # the arm that searches it first, then one that fixes it (a treatment before the control)
        for arm in plan.arms:
            if value is None and any(priors.ALIASES.get(p.name, p.name) == canonical for p in arm.search):
                return f"arms[{arm.name}]"
        for arm in sorted(plan.arms, key=lambda a: a.role == "control"):
            for name, setting in arm.fixed.items():
                if priors.ALIASES.get(name, name) == canonical and (value is None or setting == value):
                    return f"arms[{arm.name}]"
        for name, setting in plan.conditions.items():
            if priors.ALIASES.get(name, name) == canonical and (value is None or setting == value):
                return f"conditions[{name}]"
        for p in plan.search_space:
            if priors.ALIASES.get(p.name, p.name) == canonical and (
                value is None or value in (p.choices or [])
            ):
                return f"search_space[{p.name}]"
        for c in plan.code_changes:  # a change to the setting, saying the value where one is named
            said = f"{c.value if c.value is not None else ''} {c.description}".lower()
            if priors.ALIASES.get(c.target, c.target) == canonical and (
                value is None or str(value).lower() in said
            ):
                return f"code_changes[{c.target}]"
        return ""

    return honours


def _dataset(values: dict[str, str]) -> Honour:
    def honours(plan: ExperimentPlan) -> str:
        wanted = values.get(plan.task)
        if wanted is None:
            return ""
        if plan.conditions.get("dataset") == wanted:
            return "conditions[dataset]"
        known = plan.task in registry.TASKS and registry.get(plan.task).defaults.get("dataset") == wanted
        return "task" if known and "dataset" not in plan.conditions else ""

    return honours


def _task(tasks: frozenset[str]) -> Honour:
    """A task's words: honoured by a plan on that task, or on the person's own script, which they chose."""

    def honours(plan: ExperimentPlan) -> str:
        spec = registry.TASKS.get(plan.task)
        return "task" if plan.task in tasks or spec is None or spec.family == "user" else ""

    return honours


def _when(check: Callable[[ExperimentPlan], bool], field: str) -> Honour:
    return lambda plan: field if check(plan) else ""


def _secondary(name: str) -> Honour:
    return _when(lambda p: any(s.name == name for s in p.secondary), f"secondary[{name}]")


def _samplers(names: tuple[str, ...]) -> Honour:
    return _when(lambda p: bool(set(names) & set(p.samplers)), "samplers")


def _compressed(kind: str | None = None) -> Honour:
    return _when(lambda p: p.compression is not None and kind in (None, p.compression.kind), "compression")


def _capacity(plan: ExperimentPlan) -> str:
    sized = [p.name for p in plan.search_space if priors.ALIASES.get(p.name, p.name) in priors.CAPACITY]
    return f"search_space[{sized[0]}]" if sized else ""


@cache
def vocabulary() -> tuple[Term, ...]:
    """Every phrase the rules know, as the part it makes: built from the same tables the offline planner
    reads, so a phrase the planner learns is a phrase the check accounts for."""
    terms: list[Term] = [Term("technique", t.terms, sets(t.param, t.value)) for t in priors.TECHNIQUES]
    terms += [Term("setting", phrases, sets(c)) for c, phrases in words.PARAM_TERMS.items()]
    terms += [Term("dataset", d.terms, _dataset(d.values)) for d in priors.DATASETS]
    terms += [
        Term("metric", phrases, _when(lambda p, key=key: p.metric.name == key, "metric"))
        for key, phrases in words.METRIC_TERMS.items()
    ]
    terms += [Term("objective", phrases, _secondary(n)) for n, phrases in words.SECONDARY_TERMS.items()]
    terms += [
        Term("constraint", words.NON_INFERIORITY_TERMS, _when(lambda p: p.margin is not None, "margin")),
        Term(
            "constraint",
            words.EQUIVALENCE_TERMS,
            _when(lambda p: p.margin is not None and p.margin.test == "equivalence", "margin"),
        ),
        Term(
            "constraint",
            words.LOW_RESOURCE_TERMS,
            _when(
                lambda p: p.budget.trials <= priors.LOW_RESOURCE_TRIALS or bool(p.budget.timeout_s), "budget"
            ),
        ),
    ]
    terms += [Term("technique", phrases, _samplers(names)) for phrases, names in words.SAMPLER_TERMS]
    terms += [
        Term("technique", phrases, _when(lambda p, pruner=pruner: p.pruner == pruner, "pruner"))
        for phrases, pruner in words.PRUNER_TERMS
    ]
    terms += [
        Term("technique", words.QUANTIZATION_TERMS, _compressed("int8_dynamic")),
        Term("technique", words.WEIGHT_PRUNING_TERMS, _compressed("magnitude_pruning")),
        Term("technique", words.PRUNING_TERMS, _compressed("magnitude_pruning")),
        Term("objective", words.COMPRESSION_TERMS, _compressed()),
        Term("objective", words.COMPRESSION_TERMS, _capacity),
        Term(
            "objective",
            words.TRADE_OFF_TERMS,
            _when(lambda p: p.compression is not None and p.compression.objective == "multi", "compression"),
        ),
        Term(
            "technique",
            words.FINETUNE_TERMS,
            _when(lambda p: p.compression is not None and p.compression.finetune_epochs > 0, "compression"),
        ),
    ]
    terms += [Term("technique", phrases, lambda p: "") for phrases, _, _ in words.UNSUPPORTED]
    for name in registry.names():
        spec = registry.get(name)
        family = priors.FAMILY_ALIASES.get(spec.family, spec.family)
        terms.append(Term("dataset", (name, *spec.keywords), _task(frozenset({name}))))
        terms.append(Term("dataset", words.FAMILY_TERMS.get(family, ()), _task(frozenset({name}))))
    terms.append(Term("technique", words.FINETUNE_TERMS, _task(_family("transformer"))))
    return tuple(terms)


def for_task(task: str | None) -> tuple[Term, ...]:
    """The vocabulary, and the task script's own hyperparameter names as it spells them ("gamma", "max_len")
    where no phrase of the vocabulary says them: an idea that names one is answered on it too."""
    spec = registry.TASKS.get(task or "")
    if spec is None:
        return vocabulary()
    said = {normalize(p) for term in vocabulary() for p in term.phrases}
    own = [
        Term("setting", (name.replace("_", " "),), sets(priors.ALIASES.get(name, name)))
        for name in spec.defaults
        if normalize(name) not in said
    ]
    return (*vocabulary(), *own)


def _family(family: str) -> frozenset[str]:
    return frozenset(
        n for n in registry.names() if priors.FAMILY_ALIASES.get(f := registry.get(n).family, f) == family
    )


@cache
def known_words() -> tuple[str, ...]:
    """Words that make a clause a readable part of the question without being a part of their own."""
    return (
        *words.ML_TERMS,
        *words.COMPARISON_TERMS,
        *words.HEAD_TO_HEAD_TERMS,
        *(w for said in words.DIRECTION_TERMS.values() for w in said),
    )


def span(text: str, phrase: str) -> tuple[int, int] | None:
    found = re.search(rf"\b{re.escape(normalize(phrase))}(?:s|es|d|ed|ing)?\b", text)
    return None if found is None else found.span()


def _values(plan: ExperimentPlan) -> list[tuple[float, str]]:
    """Every number the plan holds, with its field (what defines the question first, the budget last): what
    a number the idea names can be honoured by."""
    held: list[tuple[object, str]] = []
    for arm in plan.arms:
        held += [(v, f"arms[{arm.name}]") for v in arm.fixed.values()]
        held += [(v, f"arms[{arm.name}]") for p in arm.search for v in (p.low, p.high, *(p.choices or []))]
    held += [(v, f"conditions[{k}]") for k, v in plan.conditions.items()]
    held += [(c.value, f"code_changes[{c.target}]") for c in plan.code_changes]
    if plan.compression is not None:
        sparsity = plan.compression.sparsity
        held += [(sparsity * scale, "compression") for scale in (1, 100) if sparsity is not None]
        held.append((plan.compression.finetune_epochs, "compression"))
    if plan.margin is not None and plan.margin.value is not None:
        held += [(plan.margin.value * scale, "margin") for scale in (1, 100)]
    b = plan.budget
    held += [(b.trials, "budget.trials"), (b.seeds, "budget.seeds"), (b.workers, "budget.workers")]
    if b.timeout_s:
        held += [(b.timeout_s / unit, "budget.timeout_s") for unit in (1, 60, 3600)]
    held += [
        (v, f"search_space[{p.name}]") for p in plan.search_space for v in (p.low, p.high, *(p.choices or []))
    ]
    held += [(100 * ph.data_fraction, f"phases[{ph.name}]") for ph in plan.phases]
    return [(float(v), f) for v, f in held if isinstance(v, int | float) and not isinstance(v, bool)]


def holds(value: float) -> Honour:
    def honours(plan: ExperimentPlan) -> str:
        for held, field in _values(plan):
            if math.isclose(held, value, rel_tol=1e-6, abs_tol=1e-12):
                return field
        return ""

    return honours


def has_margin(plan: ExperimentPlan) -> str:
    return "margin" if plan.margin is not None and plan.margin.value is not None else ""


def head_to_head(plan: ExperimentPlan) -> str:
    """Two treatments pitted against each other: a head-to-head pair, or a plan whose one treatment is
    compared with the other option as its control."""
    if plan.head_to_head:
        return "head_to_head"
    return "arms" if len(plan.arms) == 2 else ""
