"""Idea -> ExperimentPlan: through the configured LLM, or the offline rules when none is configured.

Whoever drafts the plan, it meets the same rules (agent.plan.rules): a registered task, hyperparameters the
task's script takes, valid ranges, budgets within the configured caps, and the metric and its direction taken
from the task registry. The loop calls `make_plan` (and, with an LLM, `revise_plan` between rounds); the CLI
and the report call `render_markdown`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from langchain_core.messages import BaseMessage
from pydantic import create_model

import templates
from agent import runs
from agent.config import Settings
from agent.plan import llm, structured
from agent.plan.offline import planner as offline_planner
from agent.plan.rules import PlanError, PlanInvalid, check_idea, check_plan
from agent.results import Finding
from agent.schemas import CodeChangeKind, ExperimentPlan
from experiments import registry
from experiments.records import Model

__all__ = [
    "PlanError",
    "check_idea",
    "PlanDraft",
    "make_plan",
    "revise_plan",
    "render_markdown",
    "plan_context",
    "write_plan",
]

# What the planner fills in itself, so a model's text can never set it.
_FORCED = ("idea", "metric", "datasets", "model", "planner", "usage")

PlanDraft: type[Model] = create_model(  # type: ignore[call-overload]
    "PlanDraft",
    __base__=Model,
    __doc__="An experiment plan for the research idea: task, search space, samplers, pruner, budget, phases.",
    **{
        name: (field.annotation, field)
        for name, field in ExperimentPlan.model_fields.items()
        if name not in _FORCED
    },
)


def make_plan(idea: str, settings: Settings, task: str | None = None) -> ExperimentPlan:
    """A validated plan for `idea`, on `task` if given; PlanError (one line) when none can be made."""
    text = check_idea(idea)
    if task is not None and task not in registry.TASKS:
        raise PlanError(str(registry.UnknownTask(task)))
    try:
        offline = llm.is_offline(settings)
    except llm.LLMError as exc:
        raise PlanError(str(exc)) from None
    if offline:
        try:
            return check_plan(offline_planner.plan(text, settings, task), settings, task)
        except PlanInvalid as exc:
            raise PlanError(
                f"the offline planner drafted an invalid plan (a bug; please report it): {exc}"
            ) from None
    return _ask_for_plan("prompts/plan.md.j2", text, settings, task)


def revise_plan(plan: ExperimentPlan, findings: Sequence[Finding], settings: Settings) -> ExperimentPlan:
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
    current = plan.model_dump_json(indent=1, exclude=set(_FORCED))  # as a PlanDraft, to edit
    revised = _ask_for_plan(
        "prompts/revise.md.j2", plan.idea, settings, plan.task, current=current, findings=list(findings)
    )
    return revised.model_copy(update={"usage": plan.usage + revised.usage})


def plan_messages(
    template: str, idea: str, settings: Settings, task: str | None, **context: Any
) -> list[BaseMessage]:
    """The prompt a planning `template` renders to: the tasks, the schema, the limits and the change kinds."""
    return structured.render_messages(
        template,
        idea=idea,
        task=task,
        tasks=[registry.get(name) for name in ([task] if task else registry.names())],
        schema_name=PlanDraft.__name__,
        schema=structured.schema_json(PlanDraft),
        limits={"max_trials": settings.max_trials, "max_rounds": settings.max_rounds},
        change_kinds=get_args(CodeChangeKind),
        **context,
    )


def _ask_for_plan(
    template: str, idea: str, settings: Settings, task: str | None, **context: Any
) -> ExperimentPlan:
    """A plan from the configured LLM through `template`, checked by the plan rules, repaired or refused."""
    try:
        chat = llm.connect(settings)
    except llm.LLMError as exc:
        raise PlanError(str(exc)) from None
    messages = plan_messages(template, idea, settings, task, **context)

    def finish(draft: Model) -> ExperimentPlan:
        fields: dict[str, Any] = draft.model_dump()
        spec = registry.TASKS.get(fields["task"])
        if spec is None:
            raise PlanInvalid(
                [f"task: {fields['task']!r} is not a registered task; choose one of {registry.names()}"]
            )
        plan = ExperimentPlan(
            **fields, idea=idea, metric=spec.metric, datasets=[spec.data], model=spec.model, planner=chat.spec
        )
        return check_plan(plan, settings, task)

    try:
        answer = structured.ask(
            chat,
            messages,
            PlanDraft,
            finish=finish,
            repairs=settings.llm_repairs,
            max_tokens=settings.max_tokens,
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
