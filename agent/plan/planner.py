"""Idea -> ExperimentPlan: through the configured LLM, or the offline rules when none is configured.

Whoever drafts the plan, it meets the same rules (agent.plan.rules): a registered task, hyperparameters the
task's script takes, valid ranges, budgets within the configured caps, and the metric and its direction taken
from the task registry. The loop calls `make_plan` (and, with an LLM, `revise_plan` between rounds); the CLI
and the report call `render_markdown`.

A model is asked for a `PlanDraft` (agent.plan.draft), only what the idea decides, and is shown the tasks the
idea's words point at and the offline planner's reading of the idea as a draft to correct: the prompt fits a
4,096-token context, and a small model edits a plan instead of writing one from nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

import templates
from agent import runs
from agent.config import Settings
from agent.plan import coverage, llm, structured
from agent.plan import draft as drafts
from agent.plan.draft import PlanDraft
from agent.plan.offline import meaning
from agent.plan.offline import planner as offline_planner
from agent.plan.rules import PlanError, PlanInvalid, check_idea, check_plan, normalize
from agent.results import Finding
from agent.schemas import ExperimentPlan
from experiments import registry
from experiments.registry import Task

__all__ = [
    "PlanError",
    "check_idea",
    "PlanDraft",
    "make_plan",
    "revise_plan",
    "plan_prompt",
    "render_markdown",
    "plan_context",
    "write_plan",
]

PLAN_PROMPT = "prompts/plan.md.j2"
REVISE_PROMPT = "prompts/revise.md.j2"
CANDIDATES = 2  # tasks described in full to a model: the ones the idea's words point at most


def make_plan(
    idea: str, settings: Settings, task: str | None = None, waiting: structured.Waiting | None = None
) -> ExperimentPlan:
    """A validated plan for `idea`, on `task` if given; PlanError (one line) when none can be made. `waiting`
    hears how long a model's answer has taken, while it is awaited."""
    text = check_idea(idea)
    if task is not None and task not in registry.TASKS:
        raise PlanError(str(registry.UnknownTask(task)))
    try:
        offline = llm.is_offline(settings)
    except llm.LLMError as exc:
        raise PlanError(str(exc)) from None
    if offline:
        try:
            return coverage.account(check_plan(offline_planner.plan(text, settings, task), settings, task))
        except PlanInvalid as exc:
            raise PlanError(
                f"the offline planner drafted an invalid plan (a bug; please report it): {exc}"
            ) from None
    base = offline_planner.plan(text, settings, task)
    draft = structured.compact(drafts.draft_of(base))
    return _ask_for_plan(PLAN_PROMPT, text, settings, task, base, waiting, draft=draft)


def plan_prompt(idea: str, settings: Settings, task: str | None = None) -> list[BaseMessage]:
    """The messages `make_plan` sends a model for `idea`: what `research-loop plan --show-prompt` prints."""
    text = check_idea(idea)
    base = offline_planner.plan(text, settings, task)
    return plan_messages(PLAN_PROMPT, text, settings, task, draft=structured.compact(drafts.draft_of(base)))


def revise_plan(
    plan: ExperimentPlan,
    findings: Sequence[Finding],
    settings: Settings,
    waiting: structured.Waiting | None = None,
) -> ExperimentPlan:
    """The next round's plan for the same task, drafted by the configured LLM from a round's findings.

    Offline there is no model to ask (PlanError); the analyst's own rules revise plans there. The revised plan
    meets the same rules as a first plan, and its usage adds this call's tokens to the plan's.
    """
    try:
        offline = llm.is_offline(settings)
    except llm.LLMError as exc:
        raise PlanError(str(exc)) from None
    if offline:
        raise PlanError("revising a plan through an LLM needs --llm; offline, the analyst's rules revise it")
    current = structured.compact(drafts.draft_of(plan))
    revised = _ask_for_plan(
        REVISE_PROMPT, plan.idea, settings, plan.task, plan, waiting, current=current, findings=list(findings)
    )
    return revised.model_copy(update={"usage": plan.usage + revised.usage})


def _missed(part: str) -> str:
    """The repair line for a part of the idea the plan neither honours nor lists (the 1.5B model dropped
    "clipping the gradient norm" without a word)."""
    return (
        f"coverage: the idea asks for {part}, which no field of this plan honours: add what does it (a code "
        "change, kind free_form with the setting's name as target when no other kind does it) or a not_done "
        "entry saying why not"
    )


def candidate_tasks(idea: str, task: str | None) -> tuple[list[Task], list[Task]]:
    """The tasks a model is shown in full (the one given, else those the idea's words point at most, as the
    offline planner ranks them) and the rest, shown by name and description only (none when one was given)."""
    if task is not None:
        return [registry.get(task)], []
    ranked = [name for _, name, _ in offline_planner.rank_tasks(meaning.canonical(normalize(idea)))]
    chosen = ranked[:CANDIDATES] or registry.names()[:1]
    others = [name for name in registry.names() if name not in chosen]
    return [registry.get(name) for name in chosen], [registry.get(name) for name in others]


def plan_messages(
    template: str, idea: str, settings: Settings, task: str | None, **context: Any
) -> list[BaseMessage]:
    """The prompt a planning `template` renders to: the candidate tasks, the limits and the plan's fields."""
    shown, others = candidate_tasks(idea, task)
    return structured.render_messages(
        template,
        idea=idea,
        task=task,
        tasks=shown,
        others=others,
        schema_name=PlanDraft.__name__,
        limits={"max_trials": settings.max_trials, "max_rounds": settings.max_rounds},
        **context,
    )


def _ask_for_plan(
    template: str,
    idea: str,
    settings: Settings,
    task: str | None,
    base: ExperimentPlan,
    waiting: structured.Waiting | None,
    **context: Any,
) -> ExperimentPlan:
    """A plan from the configured LLM through `template`, mended, expanded and checked by the plan rules,
    repaired or refused. `base` is the offline reading of the idea (or, revising, the round's plan), which
    lends the budget's wall-clock and workers."""
    try:
        chat = llm.connect(settings)
    except llm.LLMError as exc:
        raise PlanError(str(exc)) from None
    messages = plan_messages(template, idea, settings, task, **context)
    asked: list[list[str]] = []  # the parts nothing honoured, once sent back

    def finish(draft: PlanDraft) -> ExperimentPlan:
        spec = registry.TASKS.get(task or draft.task)
        if spec is None:
            raise PlanInvalid(
                [f"task: {draft.task!r} is not a registered task; choose one of {registry.names()}"]
            )
        plan = check_plan(
            drafts.expand(draft, idea, spec, settings, chat.spec, base, fixed_task=task), settings, task
        )
        missed, accounted = coverage.unhonoured(plan), coverage.account(plan)
        if missed and not asked:
            asked.append(missed)
            raise structured.Improvable(accounted, [_missed(part) for part in missed])
        return accounted

    try:
        answer = structured.ask(
            chat,
            messages,
            PlanDraft,
            finish=finish,
            repairs=settings.llm_repairs,
            max_tokens=settings.max_tokens,
            waiting=waiting,
        )
    except llm.LLMError as exc:
        raise PlanError(str(exc)) from None
    return answer.value.model_copy(update={"usage": answer.usage})


def plan_context(plan: ExperimentPlan, level: int = 2) -> dict[str, Any]:
    """What templates/_plan.md.j2 needs, for a report that includes the plan as plan.md shows it."""
    known = plan.task in registry.TASKS
    defaults = registry.get(plan.task).defaults if known else {}
    # a user's script is registered only in the process that runs it: its defaults are unknown here, which
    # is not the same as a hyperparameter that only a code change adds
    unknown = "added by a code change" if known else "the script's own"
    return {"plan": plan, "defaults": defaults, "unknown_default": unknown, "level": level}


def render_markdown(plan: ExperimentPlan) -> str:
    return templates.environment().get_template("plan.md.j2").render(**plan_context(plan))


def write_plan(folder: Path, plan: ExperimentPlan) -> None:
    """plan.json and plan.md, each written whole or not at all."""
    for name, text in (
        ("plan.json", json.dumps(plan.model_dump(mode="json"), indent=2) + "\n"),
        ("plan.md", render_markdown(plan)),
    ):
        runs.write_atomic(folder / name, text)
