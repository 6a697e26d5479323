"""What a usable idea and a valid plan are: the rules every plan meets, whoever drafted it.

One set of rules for the offline planner and for any LLM, so a plan is checked against the task registry and
the configured limits the same way however it was made. The checks return every problem at once, because an
LLM repairs a plan better when it sees all that is wrong with it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from agent.config import Settings
from agent.plan.offline.words import ML_TERMS, PARAM_TERMS
from agent.schemas import ExperimentPlan
from experiments import registry
from experiments.records import SearchParam

MAX_IDEA_CHARS = 2000
GOOD_IDEA = (
    "a good idea names a model or data set and what to try, e.g. "
    '"Does dropout help a small CNN on handwritten digits under a 30-trial budget?" or '
    '"Low-resource hyperparameter optimization using Bayesian methods for image classification"'
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALLOWED_CONTROLS = {"\n", "\t", "\r"}


class PlanError(ValueError):
    """A plan could not be made; the message is one line the CLI prints as it is."""


class PlanInvalid(ValueError):
    """A drafted plan breaks the rules; `errors` lists every broken rule, for a repair request."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def fold(text: str) -> str:
    """Lower case without accents ('Für', 'modèle' -> 'fur', 'modele'), so a non-English idea keeps its words."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("ß", "ss"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize(text: str) -> str:
    """Lower case, words separated by single spaces: 'Low-resource, 30-trial' -> 'low resource 30 trial'."""
    return " ".join(re.findall(r"[a-z0-9]+", fold(text)))


def position(text: str, term: str) -> int | None:
    """Where normalized `text` first holds `term` as whole words (a plural or verb ending allowed), or None."""
    found = re.search(rf"\b{re.escape(normalize(term))}(?:s|es|d|ed|ing)?\b", text)
    return None if found is None else found.start()


def mentions(text: str, term: str) -> bool:
    return position(text, term) is not None


def matched(text: str, terms: Iterable[str]) -> list[str]:
    return [t for t in terms if mentions(text, t)]


def _experiment_terms() -> list[str]:
    words = [*ML_TERMS, *registry.names()]
    for terms in PARAM_TERMS.values():
        words.extend(terms)
    return words


def check_idea(idea: str) -> str:
    """The idea, stripped, if it can be planned from; otherwise PlanError saying what a good idea looks like."""
    if not isinstance(idea, str) or not idea.strip():
        raise PlanError(f"the idea is empty; {GOOD_IDEA}")
    text = idea.strip()
    if len(text) > MAX_IDEA_CHARS:
        raise PlanError(f"the idea is {len(text)} characters, over the {MAX_IDEA_CHARS} limit; {GOOD_IDEA}")
    bad = sorted(
        {
            f"U+{ord(ch):04X}"
            for ch in text
            if ch == "\ufffd"
            # Cf: bidirectional overrides and zero-width characters, which make shown text differ from read text
            or (unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and ch not in _ALLOWED_CONTROLS)
        }
    )
    if bad:
        raise PlanError(f"the idea holds binary or control characters ({', '.join(bad[:5])}); {GOOD_IDEA}")
    if not matched(normalize(text), _experiment_terms()):
        raise PlanError(f"the idea does not describe a machine-learning experiment; {GOOD_IDEA}")
    return text


def kind_error(param: SearchParam, default: Any) -> str | None:
    """Why `param` cannot stand for a script value like `default` (None when it can)."""
    where = f"search_space[{param.name}]"
    if isinstance(default, bool | str):
        wanted = type(default)
        if param.kind != "categorical" or not all(isinstance(c, wanted) for c in param.choices or []):
            return f"{where}: the script's default is {default!r}, so it needs categorical {wanted.__name__} choices"
        return None
    if param.kind == "categorical":
        numbers = all(isinstance(c, int | float) and not isinstance(c, bool) for c in param.choices or [])
        whole = all(float(c) == int(c) for c in param.choices or []) if numbers else False
        if not numbers or (isinstance(default, int) and not whole):
            kind = "whole numbers" if isinstance(default, int) else "numbers"
            return f"{where}: the script's default is {default!r}, so its choices must be {kind}"
        return None
    if isinstance(default, int) and param.kind != "int":
        return f"{where}: the script's default is the whole number {default!r}, so the kind must be int"
    return None


def _value_error(where: str, value: Any, default: Any) -> str | None:
    """Why `value` cannot stand in for the script's default (None when it can, or is left to the study)."""
    if value is None:
        return None
    if isinstance(default, bool | str) or isinstance(value, bool | str):
        fits = type(value) is type(default)
    elif isinstance(default, int):
        fits = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    else:
        fits = isinstance(value, int | float)
    return None if fits else f"{where}: {value!r} does not fit the script's default {default!r}"


def check_plan(plan: ExperimentPlan, settings: Settings, task: str | None = None) -> ExperimentPlan:
    """The plan with the registry's metric, data and model and the configured caps applied, or PlanInvalid.

    `task`, when given, is the task the person asked for; a plan for any other task is an error.
    """
    if plan.task not in registry.TASKS:
        raise PlanInvalid([f"task: {plan.task!r} is not a registered task; choose one of {registry.names()}"])
    if task is not None and plan.task != task:
        raise PlanInvalid([f"task: the task was fixed to {task!r}, not {plan.task!r}"])
    spec = registry.get(plan.task)
    defaults = spec.defaults
    errors: list[str] = []

    added: set[str] = set()
    for change in plan.code_changes:
        if change.kind == "free_form":
            continue
        if not _IDENTIFIER.match(change.target):
            errors.append(f"code_changes[{change.target}].target: must be a Python identifier")
        elif change.kind == "set_default":
            if change.target not in defaults:
                errors.append(
                    f"code_changes[{change.target}]: set_default needs one of the script's hyperparameters "
                    f"{sorted(defaults)}"
                )
            elif (
                problem := _value_error(
                    f"code_changes[{change.target}].value", change.value, defaults[change.target]
                )
            ) is not None:
                errors.append(problem)
        else:
            added.add(change.target)

    if not plan.search_space:
        errors.append("search_space: needs at least one hyperparameter to tune")
    for param in plan.search_space:
        if param.name in defaults:
            if (problem := kind_error(param, defaults[param.name])) is not None:
                errors.append(problem)
        elif param.name not in added:
            errors.append(
                f"search_space[{param.name}]: {plan.task}'s script has no hyperparameter {param.name!r} "
                f"(it has {sorted(defaults)}); drop it or add a code_changes entry that adds it"
            )

    errors += _arm_errors(plan, defaults, added)

    notes = list(plan.notes)
    budget = plan.budget
    caps = {
        "trials": settings.max_trials,
        "rounds": settings.max_rounds,
        "tokens": settings.max_tokens,
        "trial_timeout_s": settings.trial_timeout_s,
    }
    capped: dict[str, Any] = {}
    for field, cap in caps.items():
        value = getattr(budget, field)
        if value is not None and value > cap:
            capped[field] = cap
            notes.append(f"budget.{field} {value:g} capped at the configured limit {cap:g}")
    budget = budget.model_copy(update=capped)
    phase_trials = sum(p.trials for p in plan.phases)
    if phase_trials > budget.trials:
        errors.append(
            f"phases: ask for {phase_trials} trials in all, more than budget.trials ({budget.trials})"
        )
    if not spec.fractional:
        errors += [
            f"phases[{p.name}].data_fraction: {plan.task} trains on all its data in every trial; use 1.0"
            for p in plan.phases
            if p.trials > 0 and p.data_fraction < 1
        ]

    if errors:
        raise PlanInvalid(errors)
    baselines = plan.baselines if "defaults" in plan.baselines else ["defaults", *plan.baselines]
    return plan.model_copy(
        update={
            "metric": spec.metric,
            "datasets": [str(plan.conditions.get("dataset", spec.data))],
            "model": spec.model,
            "budget": budget,
            "baselines": baselines,
            "notes": notes,
        }
    )


def _arm_errors(plan: ExperimentPlan, defaults: dict[str, Any], added: set[str]) -> list[str]:
    """What the arms fix or search must be the script's (or a code change's) hyperparameters, of the right
    kind; shared conditions must be the unmodified script's, because the defaults reference runs with them."""
    errors = []
    for key, value in plan.conditions.items():
        if key not in defaults:
            errors.append(
                f"conditions[{key}]: the unmodified script has no hyperparameter {key!r} (it has "
                f"{sorted(defaults)}), so the defaults reference could not run with it"
            )
        elif (problem := _value_error(f"conditions[{key}]", value, defaults[key])) is not None:
            errors.append(problem)
    for arm in plan.arms:
        where = f"arms[{arm.name}]"
        for key, value in arm.fixed.items():
            if key not in defaults and key not in added:
                errors.append(
                    f"{where}.fixed[{key}]: {plan.task}'s script has no hyperparameter {key!r}; "
                    "add a code_changes entry that adds it"
                )
            elif key in defaults and (problem := _value_error(f"{where}.fixed[{key}]", value, defaults[key])):
                errors.append(problem)
        for param in arm.search:
            if param.name in defaults:
                if (problem := kind_error(param, defaults[param.name])) is not None:
                    errors.append(f"{where}: {problem}")
            elif param.name not in added:
                errors.append(
                    f"{where}.search[{param.name}]: {plan.task}'s script has no hyperparameter "
                    f"{param.name!r}; add a code_changes entry that adds it"
                )
    return errors
