"""The offline planner's reading of what an idea compares, and under which conditions.

"Does X help?" becomes a control without X and a treatment with X; "A or B" becomes one arm each, with the
script's current setting as the control; an idea that compares nothing keeps one tuned arm against the
defaults. Conditions the idea names (a data set, a cap on training examples, a metric, a technique) become
settings every arm shares, or lines under "Not done" with the reason: a plan never drops one silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.plan.offline import priors, words
from agent.plan.offline.priors import Technique
from agent.plan.rules import matched, position
from agent.schemas import Arm, CodeChangeIntent, NotDone, Setting
from experiments import data
from experiments.hub import DataUnavailable
from experiments.records import SearchParam
from experiments.registry import Task
from experiments.script_facts import OWN_WEIGHT_DECAY

CAP = re.compile(  # "within 1 point" is a margin (agent/plan/offline/objectives.py), not one example
    r"(?<!within )\b([1-9][0-9]{0,6}) (?:(?:training|train|labelled|labeled|labelled training|labeled training) )?"
    rf"(?:{'|'.join(sorted(map(re.escape, words.TRAIN_CAP_NOUNS), key=len, reverse=True))})\b"
)
_OPTIMIZER_CALL = re.compile(r"\boptim\.(AdamW|Adam|SGD)\(")
# the value a hyperparameter that a code change adds takes by default (agent/code/edits/model.py)
_ADDED_DEFAULTS: dict[str, Setting] = {
    "lr_schedule": "constant",
    "label_smoothing": 0.0,
    "dropout": 0.0,
    "activation": "relu",
    "patience": 0,
}


@dataclass
class Reading:
    """What the idea asks for beyond the search space: arms, shared conditions, and what cannot be done."""

    arms: list[Arm] = field(default_factory=list)
    changes: list[CodeChangeIntent] = field(default_factory=list)
    conditions: dict[str, Setting] = field(default_factory=dict)
    not_done: list[NotDone] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def arm_params(self) -> set[str]:
        """Hyperparameters that set the arms apart: kept out of the space every arm shares."""
        return {k for a in self.arms for k in a.fixed} | {p.name for a in self.arms for p in a.search}

    def another_comparison(self, condition: str) -> None:
        """A second comparison the idea asks for, beside the one the arms already make: listed, not run."""
        self.not_done.append(
            NotDone(
                condition=condition,
                reason="a run answers one comparison; this one compares "
                + " and ".join(a.title for a in self.arms),
                remedy="run the other comparison as its own idea",
            )
        )


@dataclass
class _Named:
    """A technique the idea names, as the script's hyperparameters that set it."""

    technique: Technique
    names: list[str]
    current: Setting | None
    change: CodeChangeIntent | None = None


def read(text: str, spec: Task) -> Reading:
    """The arms and conditions normalized `text` asks for on task `spec`."""
    reading = Reading()
    _conditions(text, spec, reading)
    named = _techniques(text, spec, reading)
    if named and matched(text, (*words.COMPARISON_TERMS, *words.EQUIVALENCE_TERMS)):
        _arms(named, reading)
        changes = {
            (n.change.kind, n.change.target): n.change for n in named if n.change and _used(n, reading)
        }
        reading.changes += list(changes.values())
    for terms, reason, remedy in words.UNSUPPORTED:
        if hit := matched(text, terms):
            reading.not_done.append(NotDone(condition=hit[0], reason=reason, remedy=remedy))
    return reading


def _used(named: _Named, reading: Reading) -> bool:
    return any(n in reading.arm_params or n in reading.conditions for n in named.names)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "arm"


def _techniques(text: str, spec: Task, reading: Reading) -> list[_Named]:
    """The techniques the idea names, in the order it names them, that this task's script can set."""
    found: list[tuple[int, Technique]] = []
    for technique in priors.TECHNIQUES:
        places = [p for t in technique.terms if (p := position(text, t)) is not None]
        if places:
            found.append((min(places), technique))
    named: list[_Named] = []
    for _, technique in sorted(found, key=lambda item: item[0]):
        if (item := _settable(technique, spec)) is None:
            reading.not_done.append(
                NotDone(
                    condition=technique.name,
                    reason=f"{spec.name}'s script has no `{technique.param}` and no code change adds one",
                    remedy=f"add `{technique.param}` to the script's hyperparameter block and use it",
                )
            )
        elif isinstance(item, str):
            reading.not_done.append(NotDone(condition=technique.name, reason=item, remedy=""))
        else:
            named.append(item)
    return named


def _settable(technique: Technique, spec: Task) -> _Named | str | None:
    """How the script sets a technique: its own hyperparameters, or one a code change adds (None: neither)."""
    defaults = spec.defaults
    names = [n for n in defaults if priors.ALIASES.get(n, n) == technique.param]
    change = None
    if names:
        current: Setting | None = defaults[names[0]]
    elif technique.param in priors.ADDABLE:
        names = [technique.param]
        change = CodeChangeIntent(
            kind=priors.ADDABLE[technique.param],
            target=technique.param,
            description=f"add `{technique.param}` to {spec.name}'s hyperparameter block, so the arms can set it",
        )
        current = _added_default(technique.param, spec)
    else:
        return None
    if technique.value is not None:
        choices = _choices(spec, names[0])
        if choices is not None and technique.value not in choices:
            return f"{spec.name}'s `{names[0]}` takes {', '.join(map(str, choices))}, not {technique.value!r}"
    return _Named(technique, names, current, change)


def _choices(spec: Task, name: str) -> list[Setting] | None:
    own = next((p for p in spec.search_space if p.name == name and p.kind == "categorical"), None)
    return list(own.choices or []) if own else None


def _added_default(param: str, spec: Task) -> Setting | None:
    """The value a hyperparameter added by a code change has before any arm sets it: the script's own."""
    if param in ("optimizer", "weight_decay"):
        calls = set(_OPTIMIZER_CALL.findall(spec.script.read_text()))
        if len(calls) != 1:
            return None
        own = calls.pop()
        return own.lower() if param == "optimizer" else OWN_WEIGHT_DECAY.get(own, 0.0)
    return _ADDED_DEFAULTS.get(param)


def _arms(named: list[_Named], reading: Reading) -> None:
    """Toggles named: a control without any of them and one treatment each; else the first choice parameter's
    values, one arm each. A second comparison in the same idea is held fixed or listed as not done."""
    toggles = [n for n in named if n.technique.value is None]
    groups: dict[str, list[_Named]] = {}
    for n in named:
        if n.technique.value is not None:
            groups.setdefault(n.technique.param, []).append(n)
    if toggles:
        reading.arms = _toggle_arms(toggles)
        rest = list(groups.values())
    else:
        first, *rest = groups.values()
        reading.arms = _choice_arms(first, reading)
    for group in rest:
        if len(group) == 1:
            only = group[0]
            for name in only.names:
                reading.conditions[name] = only.technique.value  # type: ignore[assignment]
            reading.notes.append(f"{only.technique.name} is held fixed in every arm, as the idea says")
        else:
            reading.another_comparison(f"comparing {' and '.join(g.technique.name for g in group)}")


def _toggle_arms(toggles: list[_Named]) -> list[Arm]:
    def off(skip: _Named | None = None) -> dict[str, Setting]:
        return {n: t.technique.off for t in toggles if t is not skip for n in t.names}  # type: ignore[misc]

    def on(t: _Named) -> list[SearchParam]:
        assert t.technique.on is not None
        return [t.technique.on.model_copy(update={"name": n}) for n in t.names]

    titles = [t.technique.name for t in toggles]
    control = Arm(
        name="control" if len(toggles) > 1 else _slug(f"no {titles[0]}"),
        role="control",
        label="neither " + " nor ".join(titles) if len(toggles) > 1 else f"no {titles[0]}",
        fixed=off(),
    )
    treatments = [
        Arm(
            name=_slug(t.technique.name),
            role="treatment",
            label=t.technique.name,
            technique=t.technique.name,
            fixed=off(t),
            search=on(t),
        )
        for t in toggles
    ]
    return [control, *treatments]


def _choice_arms(group: list[_Named], reading: Reading) -> list[Arm]:
    """One arm per value; the control is the script's current value (named or not)."""
    values = [g.technique.value for g in group]
    current = group[0].current
    names = group[0].names

    def arm(value: Setting, role: str, label: str) -> Arm:
        return Arm(
            name=_slug(str(value)),
            role=role,  # type: ignore[arg-type]
            label=label,
            technique=label,
            fixed=dict.fromkeys(names, value),
        )

    if current in values:
        control_value = current
    elif len(values) == 1 and current is not None:
        control_value = current
        reading.notes.append(
            f"the idea names only {group[0].technique.name}; the control is the script's current "
            f"{names[0]} = {current!r}"
        )
    else:
        control_value = values[0]
        reading.notes.append(
            f"the script's current {names[0]} ({current!r}) is not among the named choices; the first named, "
            f"{group[0].technique.name}, is the control"
        )
    label = {g.technique.value: g.technique.name for g in group}
    control = arm(control_value, "control", label.get(control_value, f"{control_value} (current)"))  # type: ignore[arg-type]
    treatments = [arm(v, "treatment", label[v]) for v in dict.fromkeys(values) if v != control_value]  # type: ignore[arg-type]
    if not treatments:
        reading.not_done.append(
            NotDone(
                condition=group[0].technique.name,
                reason=f"the script already uses it ({names[0]} = {current!r}), so there is nothing to compare with",
                remedy="name the alternative to compare it with",
            )
        )
        return []
    return [control, *treatments]


def _conditions(text: str, spec: Task, reading: Reading) -> None:
    """The data set and training-set size the idea names, as settings every arm and the reference share."""
    defaults = spec.defaults
    for ds in priors.DATASETS:
        if not matched(text, ds.terms):
            continue
        value = ds.values.get(spec.name)
        elsewhere = [t for t in ds.values if t != spec.name]
        if value is None or "dataset" not in defaults:
            reading.not_done.append(
                NotDone(
                    condition=f"data set {ds.name}",
                    reason=f"{spec.name} cannot load it; the run uses {spec.data} instead",
                    remedy=f"pass --task {elsewhere[0]}"
                    if elsewhere
                    else "add a loader for it to the script",
                )
            )
            continue
        if value == defaults["dataset"]:
            continue
        if not ds.offline:
            try:
                data.check_available({**defaults, "dataset": value})
            except (DataUnavailable, OSError, ValueError) as exc:
                reading.not_done.append(
                    NotDone(
                        condition=f"data set {ds.name}",
                        reason=f"cannot be loaded here ({exc}); the run uses {spec.data} instead",
                        remedy="cache it with network access (HF_HOME) and plan again",
                    )
                )
                continue
        reading.conditions["dataset"] = value
        reading.notes.append(f"every arm and the defaults reference train on {ds.name}, as the idea names")
    if found := CAP.search(text):
        cap = int(found.group(1))
        if priors.TRAIN_CAP_PARAM in defaults:
            reading.conditions[priors.TRAIN_CAP_PARAM] = cap
            reading.notes.append(
                f"training is capped at {cap} examples in every arm and the defaults reference (the same "
                "subset each time); validation and held-out test keep their full size"
            )
        else:
            # a code change adds the cap with this default, so every arm trains on the same capped subset; the
            # defaults reference is the unmodified script, which cannot be capped
            reading.changes.append(
                CodeChangeIntent(
                    kind="limit_train_examples",
                    target=priors.TRAIN_CAP_PARAM,
                    value=cap,
                    description=f"cap the training split at {cap} examples, the same subset in every arm",
                )
            )
            reading.not_done.append(
                NotDone(
                    condition=f"{found.group(0)} for the defaults reference",
                    reason=f"{spec.name}'s script has no `{priors.TRAIN_CAP_PARAM}`: the patch adds the cap, so "
                    "every arm trains on the same capped subset, but the defaults reference runs the unmodified "
                    "script on its whole training split",
                    remedy=f"add `{priors.TRAIN_CAP_PARAM}` to the script's block (approve this patch) and run "
                    "again",
                )
            )
    for key, terms in words.METRIC_TERMS.items():
        hit = matched(text, terms)
        if hit and key not in (spec.metric.name, "loss"):
            reading.not_done.append(
                NotDone(
                    condition=f"metric {hit[0]}",
                    reason=f"{spec.name} is judged by {spec.metric.name}, set in the task registry so that no "
                    "plan can change what counts as better",
                    remedy="register a task whose metric it is (experiments/registry.py)",
                )
            )
