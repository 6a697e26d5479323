"""The offline planner's reading of the values an idea names for one setting.

"Is a width of 16 better than 64?", "32 vs 128", "2 vs 4 layers", "1e-3 vs 1e-2" are levels of one setting:
one arm per level, each fixing it, the script's current value as the control when it is one of them, and every
other shared setting tuned alike. "Does a lower learning rate help?" is a direction: the script's current value
against a treatment that searches the range below it. A single value ("with 2 layers", "for 5 epochs") is a
condition every arm shares, and a hyperparameter named as the script spells it ("gamma") is searched. Numbers that count trials, seeds, minutes or examples are the budget's and the
data's (agent/plan/offline/planner.py, arms.py), not levels.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.plan.offline import meaning, priors, words
from agent.plan.offline.arms import Reading
from agent.plan.rules import fold, matched, mentions, normalize, position
from agent.schemas import Arm, NotDone, Setting
from experiments.records import SearchParam
from experiments.registry import Task

# a number standing alone: not part of a name ("cifar-10", "int8", "8x8", "resnet18") or of "8-bit"
NUMBER = re.compile(r"(?<![\w.\-])(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?!\w|\.\d|\s?-?\s?bit\b)")
# words that join levels: "16 vs 64", "32 or 128", "16 better than 64", "16 as accurate as 64", and the French,
# German and Spanish "contre", "gegen", "oder", "ou", "als", "que"
_JOINERS = set(
    [
        "vs",
        "versus",
        "or",
        "against",
        "than",
        "as",
        "compared",
        "contre",
        "gegen",
        "oder",
        "ou",
        "frente",
        "contra",
        "als",
        "que",
    ]
)
# words after a number that make it the budget's, the data's or a margin's
_COUNTED = {
    *(
        "trial",
        "trials",
        "evaluation",
        "evaluations",
        "run",
        "runs",
        "iteration",
        "iterations",
        "seed",
        "seeds",
    ),
    *("worker", "workers", "process", "processes", "parallel", "minute", "minutes", "min", "mins", "hour"),
    *("hours", "h", "percent", "point", "points", "pp", "training", "train", "labelled", "labeled"),
    *words.TRAIN_CAP_NOUNS,
}
Prior = Callable[[Task, str], SearchParam | None]


@dataclass(frozen=True)
class Number:
    """A number in the idea's own text, where it stands, and the word after it."""

    value: float
    start: int
    end: int
    after: str


def numbers(idea: str) -> list[Number]:
    """The standalone numbers of the idea, in order."""
    text = fold(idea)
    found = []
    for m in NUMBER.finditer(text):
        rest = text[m.end() :]
        after = "%" if rest.startswith("%") else (normalize(rest).split() or [""])[0]
        found.append(Number(float(m.group(1)), m.start(), m.end(), after))
    return found


def counted(number: Number) -> bool:
    """Whether a number counts trials, seeds, minutes, examples or points rather than naming a value."""
    return number.after in _COUNTED or number.after == "%"


def read(idea: str, text: str, spec: Task, reading: Reading, prior: Prior) -> None:
    """Level arms, a direction's arms, or shared conditions for the values `idea` names on `spec`; `text` is
    the idea normalized and rewritten, `prior` the planner's range for a hyperparameter."""
    folded = fold(idea)
    values = [n for n in numbers(idea) if not counted(n)]
    chains, single = _chains(folded, values)
    for chain in chains:
        found = _setting(folded, chain[0].start, chain[-1].end, spec)
        if found is None:
            continue
        name, canonical = found
        levels = [v for n in chain if (v := _typed(n.value, spec.defaults[name])) is not None]
        if len(set(levels)) < 2:
            continue
        if reading.arms:
            reading.another_comparison(f"{name} at {' vs '.join(map(str, levels))}")
            continue
        reading.arms = _level_arms(name, list(dict.fromkeys(levels)), spec.defaults[name], reading)
    for n in single:
        found = _setting(folded, n.start, n.end, spec)
        if found is None or found[0] in reading.arm_params or found[0] in reading.conditions:
            continue
        value = _typed(n.value, spec.defaults[found[0]])
        if value is not None:
            reading.conditions[found[0]] = value
            reading.notes.append(
                f"{found[0]} = {value} in every arm and the defaults reference, as the idea says"
            )
    if not reading.arms:
        _direction(text, spec, reading, prior)


def _chains(text: str, values: list[Number]) -> tuple[list[list[Number]], list[Number]]:
    """Numbers joined by "vs", "or", "than" (a list with commas too) as chains of levels, and the rest."""
    chains: list[list[Number]] = []
    current: list[Number] = []
    joined = False
    for n in values:
        if current:
            between = text[current[-1].end : n.start]
            said = set(normalize(between).split())
            if len(said) <= 5 and (said & _JOINERS or not said and "," in between):
                current.append(n)
                joined = joined or bool(said & _JOINERS)
                continue
            if joined and len(current) > 1:
                chains.append(current)
        current, joined = [n], False
    if joined and len(current) > 1:
        chains.append(current)
    chained = {id(n) for c in chains for n in c}
    return chains, [n for n in values if id(n) not in chained]


def _setting(text: str, start: int, end: int, spec: Task) -> tuple[str, str] | None:
    """The script's numeric hyperparameter named nearest the numbers at `start`..`end` of the folded idea (a
    few words either side), with its canonical name."""
    left = meaning.canonical(normalize(text[max(0, start - 30) : start]))
    window = f"{left} {normalize(text[start:end])} {meaning.canonical(normalize(text[end : end + 25]))}"
    anchor = len(left)
    best: tuple[int, str, str] | None = None
    for canonical, named in words.PARAM_TERMS.items():
        terms = (*named, *words.LEVEL_TERMS.get(canonical, ()))
        names = [n for n in spec.defaults if priors.ALIASES.get(n, n) == canonical]
        numeric = [n for n in names if _numeric(spec.defaults[n])]
        places = [p for t in terms if (p := position(window, t)) is not None]
        distance = min((abs(p - anchor) for p in places), default=None)
        if numeric and distance is not None and (best is None or distance < best[0]):
            best = (distance, numeric[0], canonical)
    return None if best is None else (best[1], best[2])


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _typed(value: float, default: Setting) -> Setting | None:
    if isinstance(default, bool) or not isinstance(default, int | float):
        return None
    if isinstance(default, int):
        return int(value) if value.is_integer() else None
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def _level_arms(name: str, levels: list[Setting], current: Setting, reading: Reading) -> list[Arm]:
    control = current if current in levels else levels[0]
    if current not in levels:
        reading.notes.append(
            f"the script's current {name} ({current!r}) is not among the named levels; the first named, "
            f"{levels[0]!r}, is the control"
        )
    reading.notes.append(f"one arm per level of {name}: {', '.join(map(str, levels))}, each fixed in its arm")

    def arm(value: Setting) -> Arm:
        role = "control" if value == control else "treatment"
        label = f"{name} = {value}"
        return Arm(
            name=_slug(f"{name}-{value}"),
            role=role,
            label=label,
            technique=label if role == "treatment" else "",
            fixed={name: value},
        )

    return [arm(control), *(arm(v) for v in levels if v != control)]


def _direction(text: str, spec: Task, reading: Reading, prior: Prior) -> None:
    """ "A lower learning rate", "more layers": the script's current value against the range beyond it."""
    for way, said in words.DIRECTION_TERMS.items():
        for canonical, terms in words.PARAM_TERMS.items():
            phrases = [f"{d} {t}" for d in said for t in terms] + [f"{t} {d}" for d in said for t in terms]
            names = [n for n in spec.defaults if priors.ALIASES.get(n, n) == canonical]
            if not names or not _numeric(current := spec.defaults[names[0]]) or not matched(text, phrases):
                continue
            name = names[0]
            param = _beyond(prior(spec, name), current, way == "lower")
            if param is None:
                reading.not_done.append(
                    NotDone(
                        condition=f"{way} {name}",
                        reason=f"{spec.name}'s {name} is {current!r}, at the edge of its range",
                        remedy=f"name the {name} values to compare",
                    )
                )
                return
            reading.arms = [
                Arm(
                    name=_slug(f"current-{name}"),
                    role="control",
                    label=f"{name} = {current} (current)",
                    fixed={name: current},
                ),
                Arm(
                    name=_slug(f"{way}-{name}"),
                    role="treatment",
                    label=f"{way} {name}",
                    technique=f"{way} {name}",
                    search=[param],
                ),
            ]
            reading.notes.append(
                f"'{way} {name}' compares the script's {name} = {current} with {param.describe()}, tuned alike"
            )
            return


def _beyond(param: SearchParam | None, current: int | float, lower: bool) -> SearchParam | None:
    """The prior's range on one side of the current value (a decade past it where the prior stops short)."""
    if param is None or param.kind == "categorical" or current == 0 and lower:
        return None
    low, high = float(param.low or 0), float(param.high or 0)
    if isinstance(current, int):
        bounds = (
            (min(int(low), current - 1), current - 1) if lower else (current + 1, max(int(high), current + 1))
        )
        if bounds[1] < max(bounds[0], 1):
            return None
        return SearchParam(name=param.name, kind="int", low=max(bounds[0], 1), high=bounds[1])
    if lower:
        bounds = (
            min(low, current / 10) if param.log else min(low, 0.0),
            current / 2 if param.log else current * 0.9,
        )
    else:
        bounds = (
            current * 2 if param.log else current * 1.1,
            max(high, current * 10 if param.log else current),
        )
    if bounds[0] >= bounds[1] or param.log and bounds[0] <= 0:
        return None
    return SearchParam(name=param.name, kind="float", low=bounds[0], high=bounds[1], log=param.log)


def literal_names(text: str, spec: Task, known: set[str]) -> list[str]:
    """The script's own hyperparameters the idea names as the script spells them ("gamma", "max_len"), beyond
    the vocabulary's words: searched, not dropped. Names that are also plain words of an idea are left out."""
    return [
        n
        for n, default in spec.defaults.items()
        if not isinstance(default, str) and n not in known and priors.ALIASES.get(n, n) not in known
        if n not in priors.TECHNIQUE_PARAMS and mentions(text, n.replace("_", " "))
    ]
