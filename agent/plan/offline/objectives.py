"""The offline planner's reading of what an idea asks beside "is it better": a second objective ("faster",
"smaller"), a margin ("within half a point", "without losing accuracy", "the same as") and two treatments
compared with each other ("is weight decay better than dropout?").

These become the plan's `secondary`, `margin` and `head_to_head`; the analysis measures and tests them, so
the answer covers every objective the idea names, not only the metric.
"""

from __future__ import annotations

import re
from itertools import combinations

from agent.plan.offline import words
from agent.plan.rules import fold, matched
from agent.schemas import Arm, HeadToHead, Margin, SecondaryObjective
from experiments.records import Metric

_WORDS = {"half a": 0.5, "a half": 0.5, "a": 1.0, "one": 1.0, "two": 2.0, "three": 3.0, "five": 5.0}
# "within half a point", "within 1 percentage point", "within 0.5%", "within 2 points", read in the idea's own
# text (normalizing drops the decimal point and the percent sign); a unit is needed: "within 10 minutes" is a
# budget
MARGIN = re.compile(
    rf"\bwithin (?:(?P<word>{'|'.join(_WORDS)})|(?P<number>\d+(?:\.\d+)?)) ?"
    r"(?P<unit>%|percentage points?\b|points?\b|pp\b|percent\b)"
)


def secondary(text: str, arms: list[Arm]) -> list[SecondaryObjective]:
    """The objectives beside the metric that normalized `text` names, in the vocabulary's order; training time
    asked of early stopping also measures the epochs it actually ran, which is how it saves the time."""
    found: list[SecondaryObjective] = []
    rest = text
    for name, terms in words.SECONDARY_TERMS.items():
        if hit := matched(rest, terms):
            found.append(SecondaryObjective(name=name, asked_by=hit[0]))
            for term in hit:  # "faster inference" is latency, not training time
                rest = re.sub(rf"\b{re.escape(term)}\b", " ", rest)
    stopping = any(a.technique == "early stopping" for a in arms)
    names = [s.name for s in found]
    if stopping and "train_time_s" in names and "epochs_run" not in names:
        found.append(
            SecondaryObjective(name="epochs_run", asked_by=found[names.index("train_time_s")].asked_by)
        )
    return found


def margin(idea: str, text: str, metric: Metric, notes: list[str]) -> Margin | None:
    """The margin the idea states: one in points of the metric (a point is 0.01 of an accuracy), or a
    non-inferiority or equivalence phrase without one (then the run's noise floor is the margin). `text` is
    the idea normalized and rewritten (agent/plan/offline/meaning.py)."""
    if found := MARGIN.search(" ".join(fold(idea).split())):
        points = _WORDS[found["word"]] if found["word"] else float(found["number"])
        value = points / 100 if _fraction(metric) else points
        notes.append(
            f"'{found.group(0)}' is a non-inferiority margin of {value:g} {metric.name} "
            f"({points:g} point{'s' if points != 1 else ''})"
        )
        return Margin(value=value, asked_by=found.group(0))
    if hit := matched(text, words.EQUIVALENCE_TERMS):
        return Margin(test="equivalence", asked_by=hit[0])
    if hit := matched(text, words.NON_INFERIORITY_TERMS):
        notes.append(
            f"'{hit[0]}' is a non-inferiority test; no margin is stated, so the noise floor is the margin"
        )
        return Margin(asked_by=hit[0])
    return None


def _fraction(metric: Metric) -> bool:
    """Whether the metric is a fraction (accuracy, F1), where a point is 0.01."""
    return metric.name != "loss"


def head_to_head(text: str, arms: list[Arm]) -> list[HeadToHead]:
    """Every pair of treatments, when the idea pits them against each other; with one treatment the
    comparison with the control is already the head-to-head one."""
    treatments = [a for a in arms if a.role == "treatment"]
    hit = matched(text, words.HEAD_TO_HEAD_TERMS)
    if len(treatments) < 2 or not hit:
        return []
    return [HeadToHead(first=a.name, second=b.name, asked_by=hit[0]) for a, b in combinations(treatments, 2)]
