"""The offline planner: a deterministic reading of the idea against the task registry and written-down priors.

It is the default because no language model that runs usefully on a small CPU ships in a package. It does not
pretend to be one: its plans say `planner = "offline-rules"`, and every choice it made that the idea did not
spell out is written into the plan's notes. The same idea, registry and settings always give the same plan.
"""

from __future__ import annotations

import math
import re

from agent.config import Settings
from agent.plan.offline import arms as offline_arms
from agent.plan.offline import compression as offline_compression
from agent.plan.offline import levels, meaning, objectives, priors, words
from agent.plan.rules import kind_error, matched, normalize
from agent.schemas import Budget, CodeChangeIntent, ExperimentPlan, Phase, PrunerName, SamplerName
from experiments import registry
from experiments.records import Compression, SearchParam
from experiments.registry import Task

PLANNER_NAME = "offline-rules"
_TRIALS = re.compile(
    r"\b([1-9][0-9]{0,5}) (?:trial|trials|evaluation|evaluations|run|runs|iteration|iterations)\b"
)
_SEEDS = re.compile(r"\b([1-9][0-9]?) seeds?\b")
_WORKERS = re.compile(r"\b([1-9][0-9]{0,2}) (?:workers|processes|parallel)\b")
_TIMEOUT = re.compile(r"\b([1-9][0-9]{0,3}) (minute|minutes|min|mins|hour|hours|h)\b")


def plan(idea: str, settings: Settings, task: str | None = None) -> ExperimentPlan:
    """A plan for an idea that has passed `plan_rules.check_idea`; `task` overrides the registry match."""
    text = meaning.canonical(normalize(idea))
    notes: list[str] = []
    chosen = _choose_task(text, task, notes)
    low_resource = bool(matched(text, words.LOW_RESOURCE_TERMS))
    reading = offline_arms.read(text, chosen)
    levels.read(idea, text, chosen, reading, prior)
    compression = offline_compression.read(text, chosen, notes, reading.not_done)
    multi = compression is not None and compression.objective == "multi"
    space, changes = _search_space(text, chosen, low_resource, notes, reading, compression)
    samplers = _samplers(text, notes, reference=not reading.arms, multi=multi)
    pruner = "none" if multi else _pruner(text, low_resource)
    budget = _budget(text, low_resource, settings, notes)
    steps = phases(budget, pruner, chosen, arms=bool(reading.arms))
    # one round per tuning phase: explore on a subset, then optimise on all the data
    budget = budget.model_copy(update={"rounds": sum(p.trials > 0 for p in steps)})
    notes += reading.notes
    margin = objectives.margin(idea, text, chosen.metric, notes)
    return ExperimentPlan(
        title=title(idea),
        idea=idea,
        objective=_objective(chosen, space, samplers, budget, reading, multi),
        hypothesis=_hypothesis(text, chosen, space, samplers, budget, reading),
        task=chosen.name,
        datasets=[reading.conditions.get("dataset", chosen.data)],  # type: ignore[list-item]
        model=chosen.model,
        search_space=space,
        metric=chosen.metric,
        baselines=["defaults", *([priors.REFERENCE_SAMPLER] if priors.REFERENCE_SAMPLER in samplers else [])],
        samplers=samplers,
        pruner=pruner,
        budget=budget,
        phases=steps,
        code_changes=[*changes, *reading.changes],
        arms=reading.arms,
        conditions=reading.conditions,
        not_done=reading.not_done,
        compression=compression,
        secondary=objectives.secondary(text, reading.arms),
        margin=margin,
        head_to_head=objectives.head_to_head(text, reading.arms),
        notes=notes,
        planner=PLANNER_NAME,
    )


def _choose_task(text: str, requested: str | None, notes: list[str]) -> Task:
    """The requested task, else the registered task the idea's words point at most, else the first one."""
    if requested is not None:
        notes.append(f"task {requested} was given with --task")
        return registry.get(requested)
    ranked = rank_tasks(text)
    if not ranked:
        first = registry.names()[0]
        notes.append(
            f"the idea names no registered task's data or model, so the plan uses {first}, the first of "
            f"{', '.join(registry.names())}; pass --task to choose another"
        )
        return registry.get(first)
    _, name, found = ranked[0]
    notes.append(f"task {name} matches the idea's words: {', '.join(found)}")
    return registry.get(name)


def rank_tasks(text: str) -> list[tuple[int, str, list[str]]]:
    """The registered tasks the normalized idea's words point at, best first (ties in registry order), as
    (score, name, the words that matched): a task's own name and keywords count twice, its family's once.
    An LLM planner is shown the first of these, not the whole registry."""
    ranked = []
    for name in registry.names():
        spec = registry.get(name)
        family = priors.FAMILY_ALIASES.get(spec.family, spec.family)
        direct = matched(text, (name, *spec.keywords))
        hints = matched(text, words.FAMILY_TERMS.get(family, ()))
        if score := 2 * len(direct) + len(hints):
            ranked.append((score, name, sorted({*direct, *hints})))
    return sorted(ranked, key=lambda r: -r[0])


def prior(spec: Task, name: str) -> SearchParam | None:
    """The written-down range for one of the task's hyperparameters, if one fits the script's default."""
    canonical = priors.ALIASES.get(name, name)
    family = priors.FAMILY_ALIASES.get(spec.family, spec.family)
    own = {p.name: p for p in spec.search_space}
    # the task's own registered range first: it was chosen for the script's defaults (a 25-step offline
    # fine-tune needs a larger learning rate than the family's full-data prior); family, then generic, next.
    # A plain script's own ranges are guessed from its defaults, so there the written-down priors come first.
    written = [priors.FAMILY_PRIORS.get(family, {}).get(canonical), priors.GENERIC_PRIORS.get(canonical)]
    candidates = [own.get(name), *written] if spec.curated else [*written, own.get(name)]
    default = spec.defaults.get(name)
    for candidate in candidates:
        if candidate is None:
            continue
        param = candidate.model_copy(update={"name": name})
        if default is None or kind_error(param, default) is None and priors.holds(param, default):
            return param
    return None


def _search_space(
    text: str,
    spec: Task,
    low_resource: bool,
    notes: list[str],
    reading: offline_arms.Reading,
    compression: Compression | None = None,
) -> tuple[list[SearchParam], list[CodeChangeIntent]]:
    """The hyperparameters the idea is about (plus the learning rate), or the most important few; what sets
    the arms apart (and the shared conditions) is left to the arms. Compression words search the model's size,
    unless the plan compresses every model (then the compressed metric is the question); a multi-objective
    compression searches it always, since a front needs sizes to trade."""
    taken = reading.arm_params | set(reading.conditions)
    by_canonical: dict[str, list[str]] = {}
    for name in spec.defaults:
        if name not in taken:
            by_canonical.setdefault(priors.ALIASES.get(name, name), []).append(name)
    named = [
        c
        for c, terms in words.PARAM_TERMS.items()
        if matched(text, terms) and c not in taken and not (reading.arms and c in priors.ADDABLE)
    ]
    named += levels.literal_names(text, spec, {*taken, *named})
    multi = compression is not None and compression.objective == "multi"
    if multi or (matched(text, words.COMPRESSION_TERMS) and compression is None):
        sizes = [c for c in priors.CAPACITY if c in by_canonical and c not in named]
        named += sizes
        if not multi:
            notes.append(
                f"compression is read as searching the model's size; the plan still judges by "
                f"{spec.metric.name}, the task's metric, so compare sizes at equal {spec.metric.name} in the "
                "report"
            )
        elif sizes:
            notes.append(
                f"the front needs models of different sizes, so the plan searches {', '.join(sizes)}"
            )
        else:
            notes.append(
                f"{spec.name}'s script exposes none of {', '.join(priors.CAPACITY)}, so every trial's model "
                f"has the same size and the front holds the best {spec.metric.name} alone"
            )
    changes: list[CodeChangeIntent] = []
    chosen: list[str] = []
    for canonical in named:
        if canonical in by_canonical:
            chosen += by_canonical[canonical]
        elif canonical in priors.ADDABLE:
            changes.append(
                CodeChangeIntent(
                    kind=priors.ADDABLE[canonical],
                    target=canonical,
                    description=f"add `{canonical}` to {spec.name}'s hyperparameter block and use it",
                )
            )
            chosen.append(canonical)
        else:
            notes.append(
                f"the idea mentions {canonical}, which {spec.name}'s script does not expose; left out"
            )
    rates = [n for n in by_canonical.get("learning_rate", []) if n not in chosen]
    if chosen and rates:
        chosen += rates
        notes.append(
            "the learning rate is searched alongside, because the best value of the rest depends on it"
        )
    if not chosen and reading.arms and "learning_rate" in by_canonical:
        chosen = by_canonical["learning_rate"]
        notes.append(
            "every arm tunes the learning rate, because the best value of what the arms compare depends on it"
        )
    if not chosen:
        limit = priors.LOW_RESOURCE_DIMS if low_resource else priors.DEFAULT_DIMS
        ranked = [n for c in priors.IMPORTANCE for n in by_canonical.get(c, [])]
        chosen = [n for n in ranked if prior(spec, n) is not None][:limit]
        if chosen:
            notes.append(
                f"the idea names no hyperparameter, so the plan searches the {len(chosen)} that usually matter "
                f"most for a {spec.family} ({', '.join(chosen)})"
            )
        else:
            # none the written-down importance knows (a plain script's `alpha`): the task's own ranges
            chosen = [p.name for p in spec.search_space if p.name not in taken][:limit]
            notes.append(
                f"the idea names no hyperparameter the priors know, so the plan searches the script's own "
                f"({', '.join(chosen)}) in ranges around their defaults"
            )
    space: list[SearchParam] = []
    for name in chosen:
        param = prior(spec, name) if name in spec.defaults else priors.GENERIC_PRIORS[name]
        if param is None:
            notes.append(f"no written-down range fits {name}={spec.defaults[name]!r}; left at its default")
        else:
            space.append(param)
    return space, changes


def _samplers(text: str, notes: list[str], reference: bool = True, multi: bool = False) -> list[SamplerName]:
    """Samplers the idea names, in the table's order, with random search as the reference to beat unless the
    plan compares arms (then the question is the arms, and every arm is tuned by the same strategy). CMA-ES
    searches one objective only, so a multi-objective plan leaves it out."""
    named: list[SamplerName] = []
    for terms, samplers in words.SAMPLER_TERMS:
        if matched(text, terms):
            named += [s for s in samplers if s not in named]
    if multi and "cmaes" in named:
        named.remove("cmaes")
        notes.append("cmaes is left out: it searches a single objective, and this study has two")
    if not named:
        named = list(priors.DEFAULT_SAMPLERS)
        notes.append(f"the idea names no search strategy; the plan uses {', '.join(named)}")
    if reference and priors.REFERENCE_SAMPLER not in named:
        named.append(priors.REFERENCE_SAMPLER)
    return named


def _pruner(text: str, low_resource: bool) -> PrunerName:
    for terms, pruner in words.PRUNER_TERMS:
        if matched(text, terms):
            return pruner
    return "median" if low_resource else priors.DEFAULT_PRUNER


def _budget(text: str, low_resource: bool, settings: Settings, notes: list[str]) -> Budget:
    found = _TRIALS.search(text)
    trials = (
        int(found.group(1))
        if found
        else (priors.LOW_RESOURCE_TRIALS if low_resource else priors.DEFAULT_TRIALS)
    )
    if trials > settings.max_trials:
        notes.append(
            f"the idea asks for {trials} trials; capped at the configured max_trials {settings.max_trials}"
        )
        trials = settings.max_trials
    seeds = int(found.group(1)) if (found := _SEEDS.search(text)) else priors.DEFAULT_SEEDS
    workers = int(found.group(1)) if (found := _WORKERS.search(text)) else 1
    timeout = None
    if found := _TIMEOUT.search(text):
        timeout = float(found.group(1)) * (3600 if found.group(2).startswith("h") else 60)
    return Budget(
        trials=trials,
        timeout_s=timeout,
        seeds=seeds,
        workers=workers,
        trial_timeout_s=settings.trial_timeout_s,
    )


def phases(budget: Budget, pruner: PrunerName, spec: Task, arms: bool = False) -> list[Phase]:
    """Explore cheaply on a subset, optimise on all the data, then validate on the held-out split."""
    explore = (
        math.floor(budget.trials * priors.EXPLORE_SHARE)
        if budget.trials >= priors.MIN_TRIALS_FOR_EXPLORE and spec.fractional
        else 0
    )
    stopping = "; the pruner stops weak trials early" if pruner != "none" else ""
    steps = []
    if explore:
        steps.append(
            Phase(
                name="explore",
                description=f"screen the search space on {priors.EXPLORE_FRACTION:.0%} of the training data{stopping}",
                data_fraction=priors.EXPLORE_FRACTION,
                trials=explore,
            )
        )
    steps += [
        Phase(
            name="optimise",
            description=f"search on the full training data, judged by validation {spec.metric.name}{stopping}",
            data_fraction=1.0,
            trials=budget.trials - explore,
        ),
        Phase(
            name="validate",
            description=(
                f"re-run each arm's best configuration and the script's defaults on {budget.seeds} seeds; "
                "compare every treatment with the control (Holm-corrected) on the held-out test split, which "
                "no selection step saw"
                if arms
                else f"re-run the best configuration and the script's defaults on {budget.seeds} seeds and "
                "compare them on the held-out test split, which no selection step saw"
            ),
            data_fraction=1.0,
            trials=0,
        ),
    ]
    return steps


def title(idea: str) -> str:
    line = " ".join(idea.split())
    return line if len(line) <= 120 else line[:119].rstrip() + "…"


def _objective(
    spec: Task,
    space: list[SearchParam],
    samplers: list[SamplerName],
    budget: Budget,
    reading: offline_arms.Reading,
    multi: bool = False,
) -> str:
    verb = "Maximise" if spec.metric.direction == "maximize" else "Minimise"
    size = (
        f" Each study also minimises the compressed model's size: the report draws {spec.metric.name} against "
        "size as a Pareto front."
        if multi
        else ""
    )
    if reading.arms:
        arms = " vs ".join(f"{a.title} ({a.describe()})" for a in reading.arms)
        return (
            f"Compare {arms} on the {_named(spec.model, 'model')}, each arm tuning {', '.join(p.name for p in space)} with "
            f"{budget.trials} trials of {', '.join(samplers)} search on validation {spec.metric.name}, then "
            f"every arm re-run over {budget.seeds} seeds on the held-out split at the same shared values (the "
            "arms' best, each tried in every arm, chosen on validation)." + size
        )
    return (
        f"{verb} validation {spec.metric.name} of the {_named(spec.model, 'model')} on "
        f"{_named(spec.data, 'data', 'the ')} by tuning "
        f"{', '.join(p.name for p in space)}, comparing {', '.join(samplers)} search at {budget.trials} trials each."
        + size
    )


def _named(what: str, noun: str, article: str = "") -> str:
    """A task's model or data as a phrase: a script's own is "as defined by the script", which needs its noun."""
    return f"{article}{noun} {what}" if what.startswith("as ") else what


def _hypothesis(
    text: str,
    spec: Task,
    space: list[SearchParam],
    samplers: list[SamplerName],
    budget: Budget,
    reading: offline_arms.Reading,
) -> str:
    better = "higher" if spec.metric.direction == "maximize" else "lower"
    if reading.arms:
        control = next(a for a in reading.arms if a.role == "control")
        claims = [
            f"{a.title} gives a {better} held-out {spec.metric.name} than {control.title}"
            for a in reading.arms
            if a.role == "treatment"
        ]
        return (
            "; ".join(claims)
            + ", when each is tuned with the same budget, by more than the seed-to-seed noise "
            "(tested per treatment, Holm-corrected)."
        )
    named = [
        p.name for p in space if matched(text, words.PARAM_TERMS.get(priors.ALIASES.get(p.name, p.name), ()))
    ]
    subject = f"Tuning {', '.join(named)}" if named else "A tuned configuration"
    claim = (
        f"{subject} gives a {better} held-out {spec.metric.name} than the script's defaults, "
        f"by more than the seed-to-seed noise"
    )
    challengers = [s for s in samplers if s != priors.REFERENCE_SAMPLER]
    if challengers:
        claim += (
            f"; {' and '.join(challengers)} {'reach' if len(challengers) > 1 else 'reaches'} a {better} validation {spec.metric.name} than random search "
            f"within {budget.trials} trials"
        )
    return claim + "."
