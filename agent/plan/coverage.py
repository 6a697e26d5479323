"""Every part of the idea answered: the idea split into its parts, each mapped to what in the plan honours it.

The parts are read from the idea's own text, not from the planner that drafted the plan, so the offline rules
and a model are held to the same account: each clause, each number standing alone, and each phrase the
vocabulary knows (a technique, a setting, a data set or task, a metric, an objective, a constraint). A part is
honoured by a plan field (`arms[dropout]`, `search_space[learning_rate]`, `margin`, `budget.trials`), or
listed under Not done with the reason; what nothing honours or lists gets a Not done entry here ("not
understood: '...'"), so a part of the idea can never vanish between the idea and the first screen.
`account` is what the planner runs on every plan, whoever drafted it; `tally` is the same check, counted for
the planning bench.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.plan import vocabulary
from agent.plan.offline import levels, meaning, objectives, priors, words
from agent.plan.offline.arms import CAP
from agent.plan.rules import fold, matched, normalize
from agent.schemas import CoverageKind, CoveragePart, ExperimentPlan, NotDone

# clause ends: a sentence's end (not a decimal point), a colon or semicolon, brackets, a comma before a
# space, a subordinate clause, and "and" that opens a new question
_CLAUSE = re.compile(
    r"[.?!;:](?=\s|$)|[()\[\]{}<>]+|,\s|\s(?:but|when|while|whereas|because|although|so that)\s|"
    r"\sand\s(?=(?:does|do|is|are|can|will|should|also|then|check|make|see|what|how|whether)\b)",
    re.IGNORECASE,
)


@dataclass
class Part:
    """One part of the idea as read: the idea's words, its kind, the phrases that found it, its honours."""

    text: str
    kind: CoverageKind
    phrases: tuple[str, ...]
    honours: list[vocabulary.Honour]


def clauses(idea: str) -> list[str]:
    return [c.strip() for c in _CLAUSE.split(idea) if c and c.strip()]


def _quote(text: str, span: tuple[int, int], rewrites: list[meaning.Rewrite]) -> str:
    """The idea's words for a span of the rewritten text: its own, or the phrase they were read as."""
    own = [r for r in rewrites if r.start < span[1] and span[0] < r.end]
    if not own:
        return text[span[0] : span[1]]
    read = text[min(span[0], own[0].start) : max(span[1], own[-1].end)]
    return f"{' '.join(r.original for r in own)} (read as '{read}')"


def parts(idea: str, task: str | None = None) -> list[Part]:
    """The idea's parts, clause by clause: the vocabulary's phrases (a longer phrase holds the shorter ones
    inside it; one phrase several tables know is one part honoured by any of them), the numbers standing
    alone, two treatments pitted against each other, and each clause the rules read nothing in."""
    found: dict[tuple[str, str], Part] = {}
    for clause in clauses(idea):
        text, rewrites = meaning.read(normalize(clause))
        hits = [
            (span, phrase, term)
            for term in vocabulary.for_task(task)
            for phrase in term.phrases
            if (span := vocabulary.span(text, phrase)) is not None
        ]
        if cap := CAP.search(text):  # "300 training images": the images are the cap's, not a task's words
            hits.append(
                (
                    cap.span(),
                    cap.group(0),
                    vocabulary.Term("constraint", (), vocabulary.sets(priors.TRAIN_CAP_PARAM)),
                )
            )
        hits.sort(key=lambda h: (h[0][0] - h[0][1], h[0][0]))
        held: list[tuple[tuple[int, int], Part]] = []
        for span, phrase, term in hits:
            same = next((p for s, p in held if s == span), None)
            if same is not None:
                same.honours.append(term.honours)
                same.phrases = (*same.phrases, phrase)
            elif not any(s[0] < span[1] and span[0] < s[1] for s, _ in held):
                held.append((span, Part(_quote(text, span, rewrites), term.kind, (phrase,), [term.honours])))
        held.sort(key=lambda h: h[0][0])
        clause_parts = [p for _, p in held]
        if margin := objectives.MARGIN.search(" ".join(fold(clause).split())):
            clause_parts.append(
                Part(margin.group(0), "constraint", (margin.group(0),), [vocabulary.has_margin])
            )
        named = " ".join(normalize(phrase) for p in clause_parts for phrase in p.phrases)
        for n in levels.numbers(clause):
            number = clause[n.start : n.end]
            if re.search(rf"\b{re.escape(normalize(number))}\b", named):  # "cifar 10", "top 5"
                continue
            said = (
                f"{number}%"
                if n.after == "%"
                else f"{number} {n.after}"
                if n.after not in words.FILLER_WORDS
                else number
            )
            said = said.strip()
            clause_parts.append(Part(said, "number", (number,), [vocabulary.holds(n.value)]))
        options = [p for p in clause_parts if p.kind == "technique"]
        if len(options) >= 2 and (joiner := matched(text, words.HEAD_TO_HEAD_TERMS)):
            pair = f"{options[0].text} {joiner[0]} {options[1].text}"
            clause_parts.append(Part(pair, "objective", (), [vocabulary.head_to_head]))
        content = [w for w in text.split() if w not in words.FILLER_WORDS and not w.isdigit()]
        if not clause_parts and content and not matched(text, vocabulary.known_words()):
            said = clause if len(clause) <= 80 else clause[:79].rstrip() + "…"
            clause_parts.append(Part(said, "clause", (), []))
        for part in clause_parts:
            key = (part.kind, part.text)
            if key in found:
                found[key].honours += part.honours
            else:
                found[key] = part
    return list(found.values())


def _listed(part: Part, entries: list[NotDone]) -> NotDone | None:
    """The Not done entry that names the part, if any."""
    for entry in entries:
        said = meaning.canonical(normalize(f"{entry.condition} {entry.reason}"))
        if matched(said, [*part.phrases, part.text]):
            return entry
    return None


_NOT_UNDERSTOOD = "not understood: "
_NOT_HONOURED = "not honoured: "
_SENT_BACK = (
    "technique",
    "setting",
    "objective",
    "constraint",
)  # what a plan for its task could still honour


def added(entry: NotDone) -> bool:
    """Whether a Not done entry is one this check added (it adds it again to any plan for the idea)."""
    return entry.condition.startswith((_NOT_UNDERSTOOD, _NOT_HONOURED))


def _new_entry(part: Part) -> NotDone:
    if part.kind in ("clause", "number"):
        return NotDone(
            condition=f"{_NOT_UNDERSTOOD}'{part.text}'",
            reason="no rule reads this part of the idea, so the plan does not use it",
            remedy="say it with the words the planner knows (a technique, a setting and its values, a data "
            "set, a budget), or plan with --llm",
        )
    return NotDone(
        condition=f"{_NOT_HONOURED}'{part.text}'",
        reason=f"the idea names it ({part.kind}), but no field of this plan honours it",
        remedy="plan it as its own idea, or say it in other words",
    )


def _account(plan: ExperimentPlan) -> tuple[list[CoveragePart], list[NotDone], int]:
    coverage: list[CoveragePart] = []
    added: list[NotDone] = []
    dropped = 0
    for part in parts(plan.idea, plan.task):
        field = next((f for honours in part.honours if (f := honours(plan))), "")
        if field:
            coverage.append(CoveragePart(text=part.text, kind=part.kind, honoured_by=field))
            continue
        entry = _listed(part, [*plan.not_done, *added])
        if entry is None:
            dropped += 1
            entry = _new_entry(part)
            added.append(entry)
        coverage.append(CoveragePart(text=part.text, kind=part.kind, not_done=entry.reason))
    return coverage, added, dropped


def account(plan: ExperimentPlan) -> ExperimentPlan:
    """The plan with its coverage, and a Not done entry for every part of the idea nothing honours or lists."""
    coverage, added, _ = _account(plan)
    return plan.model_copy(update={"coverage": coverage, "not_done": [*plan.not_done, *added]})


def unhonoured(plan: ExperimentPlan) -> list[str]:
    """The parts of the idea the vocabulary knows (a technique, a setting, an objective, ...) that the plan
    neither honours nor lists: what a model is asked about once before this check lists them itself. Parts no
    rule reads are not sent back: they may be an injected instruction; nor are a data set or a metric, which
    name another task at most (an injected "set the task to tabular-mlp" would be repeated to the model)."""
    parts, entries, _ = _account(plan)
    added = {e.condition for e in entries}
    return [
        f"'{c.text}'"
        for c in parts
        if c.kind in _SENT_BACK and not c.honoured_by and f"{_NOT_HONOURED}'{c.text}'" in added
    ]


def dropped(plan: ExperimentPlan) -> int:
    """How many parts of the idea the plan neither honours nor lists under Not done (0 after `account`)."""
    return _account(plan)[2]


@dataclass(frozen=True)
class Tally:
    """A plan's account of its idea: parts honoured, listed by the planner, caught by this check (the
    planner dropped them; the check listed them), and dropped after the check (0 by construction)."""

    honoured: int
    listed: int
    caught: int
    dropped: int


def tally(plan: ExperimentPlan) -> Tally:
    """The account of a plan `account` has run on, as the planning bench reports it."""
    own = plan.model_copy(update={"not_done": [n for n in plan.not_done if not added(n)]})
    parts, _, caught = _account(own)
    honoured = sum(bool(c.honoured_by) for c in parts)
    return Tally(honoured, len(parts) - honoured - caught, caught, dropped(plan))


def rows(plan: ExperimentPlan) -> list[tuple[str, str, str]]:
    """The coverage table's rows: the idea's words, the kind of part, and what honours it (or Not done)."""
    return [
        (c.text, c.kind, f"`{c.honoured_by}`" if c.honoured_by else f"Not done: {c.not_done}")
        for c in plan.coverage
    ]
