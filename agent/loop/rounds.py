"""The search: the rounds of studies, one per arm and strategy, analysed and each arm's space revised between
rounds; then, with several arms, the matched round that trains each arm at the other arms' best shared values.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agent import runs
from agent.analyse import analyst
from agent.loop.arms import MATCHED, _of, _ranked, own_trials, shared_names, study_name
from agent.loop.budget import round_shape
from agent.results import Finding, RoundResult
from agent.schemas import ExperimentPlan
from experiments.records import SearchParam, StudyResult
from experiments.registry import Task
from experiments.tuning import best_of, summarize, tune

if TYPE_CHECKING:
    from agent.loop.drive import Loop

ROUNDS_DIR = "rounds"
MATCH_FILE = "match.json"
ROUND_SEED_STRIDE = 1_000_000  # each round its own sampler seed, clear of the workers' (seed + 1000 * worker)
# each arm its own sampler seed too: arms share the training seeds, but a search that replayed the control's
# points would make identical arms agree by construction, and the comparison's error rate would go unmeasured
ARM_SEED_STRIDE = 10_000


class ArmState(BaseModel):
    """What an arm searches next round, and the configurations it tries first."""

    space: list[SearchParam]
    warm: list[dict[str, Any]] = Field(default_factory=list)


def initial_states(plan: ExperimentPlan, task: Task) -> dict[str, ArmState]:
    """Every arm starts from the shared space plus its own, warm-started from the script's defaults."""
    return {
        a.name: ArmState(space=[*plan.search_space, *a.search], warm=[task.defaults]) for a in plan.arm_list()
    }


def run_round(
    loop: Loop,
    plan: ExperimentPlan,
    task: Task,
    number: int,
    states: dict[str, ArmState],
    pruner: str,
    baseline: tuple[float | None, float],
) -> RoundResult:
    """Run one round's studies (one per arm and strategy, each with the same trials) and analyse them; a
    stored round is loaded instead."""
    path = loop.folder / ROUNDS_DIR / f"round-{number}.json"
    if path.is_file():
        stored = RoundResult.model_validate_json(path.read_text())
        loop.trials_done += sum(len(s.trials) for s in stored.studies)
        return stored
    loop.stage(f"round-{number}")
    phase, fraction, trials = round_shape(plan, number, loop.rounds)
    arms = plan.arm_list()
    jobs = [(arm, sampler) for arm in arms for sampler in plan.samplers]
    configs = [
        loop.config(
            plan,
            sampler=sampler,
            pruner=pruner,
            trials=trials,
            data_fraction=fraction,
            warm_start=states[arm.name].warm,
            fixed={**plan.conditions, **arm.fixed},
            sampler_seed=loop.options.seed
            + ROUND_SEED_STRIDE * (number - 1)
            + ARM_SEED_STRIDE * arms.index(arm),
        )  # fmt: skip
        for arm, sampler in jobs
    ]
    names = [study_name(loop.info.run_id, arms, a, f"r{number}", s) for a, s in jobs]
    workers = configs[0].workers
    report = loop.reporter(f"round-{number}")
    if len(jobs) > 1 and workers >= len(jobs):
        # every study at once, the workers split between them: arms share the wall clock evenly
        share = [workers // len(jobs) + (k < workers % len(jobs)) for k in range(len(jobs))]
        configs = [c.model_copy(update={"workers": w}) for c, w in zip(configs, share, strict=True)]
        stop, left = threading.Event(), loop.time_left()
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = [
                pool.submit(tune, loop.url, n, task, loop.folder / "workspace", states[a.name].space, c,
                            report, left, stop)
                for n, (a, _), c in zip(names, jobs, configs, strict=True)
            ]  # fmt: skip
            try:
                for future in futures:
                    future.result()
            except BaseException:
                stop.set()
                raise
    else:
        for done, (n, (a, _), c) in enumerate(zip(names, jobs, configs, strict=True)):
            # a wall-clock budget is shared out evenly, so the last arm is not the one left without time
            left = loop.time_left()
            share_s = None if left is None else left / (len(jobs) - done)
            tune(loop.url, n, task, loop.folder / "workspace", states[a.name].space, c, report, share_s)
    studies = [
        summarize(loop.url, n, task, states[a.name].space, c).model_copy(update={"arm": a.name})
        for n, (a, _), c in zip(names, jobs, configs, strict=True)
    ]
    loop.trials_done += sum(len(st.trials) for st in studies)
    # an explore round trains on a subset, so its scores are not comparable with the full-data baseline
    reference = baseline if fraction == 1.0 else (None, baseline[1])
    findings = [
        f.model_copy(update={"arm": s.arm if len(arms) > 1 else "", "study": s.study_name})
        for s in studies
        for f in analyst.analyse(s, *reference)
    ]
    result = RoundResult(
        round=number, phase=phase, data_fraction=fraction, studies=studies, findings=findings
    )
    result.revision = revise_arms(result, plan, states, pruner, task)[2]
    path.parent.mkdir(exist_ok=True)
    runs.write_atomic(path, result.model_dump_json(indent=2))
    return result


def revise_arms(
    result: RoundResult, plan: ExperimentPlan, states: dict[str, ArmState], pruner: str, task: Task
) -> tuple[dict[str, ArmState], str, list[str]]:
    """Each arm revised by its own studies' findings; the pruner from all of them, so every arm keeps the same.

    An arm's own searched parameters are what defines it, so findings about them never widen them (a dropout
    arm widened down to 0 would become the control)."""
    arms = plan.arm_list()
    pooled = revise_one(result.studies, result.findings, states[arms[0].name].space, pruner, task)
    new_pruner = pooled.pruner
    out, changes = {}, []
    for arm in arms:
        own = {p.name for p in arm.search}
        studies = [s for s in result.studies if _of(s, arm, arms)]
        findings = [f for f in result.findings if (f.arm in ("", arm.name)) and f.param not in own]
        revision = revise_one(studies, findings, states[arm.name].space, pruner, task)
        out[arm.name] = ArmState(space=revision.search_space, warm=revision.warm_start)
        prefix = "" if len(arms) == 1 else f"{arm.title}: "
        changes += [f"{prefix}{c}" for c in revision.changes if "pruner" not in c]
    if new_pruner != pruner:
        changes += [c for c in pooled.changes if "pruner" in c]
    return out, new_pruner, changes


def revise_one(
    studies: list[StudyResult], findings: list[Finding], space: list[SearchParam], pruner: str, task: Task
) -> analyst.Revision:
    best = best_of([t for s in studies for t in s.trials], task.metric.direction)
    return analyst.revise(space, findings, pruner, best)


def match(
    loop: Loop, plan: ExperimentPlan, task: Task, rounds: list[RoundResult], states: dict[str, ArmState]
) -> RoundResult | None:
    """With several arms, each arm also trains at every other arm's best shared values, its own
    arm-defining values kept: one tuning trial per other arm, on validation like the search's trials.

    Each arm's search lands on its own shared values (which learning rate a small search finds varies from
    run to run more than the paired test over seeds can see: bench/results/calibration.md), so comparing
    each arm at its own best would compare searches as much as arms. With these trials every arm can be
    re-run at the same shared values, and the arms differ only in what defines them."""
    arms = plan.arm_list()
    if len(arms) < 2:
        return None
    path = loop.folder / ROUNDS_DIR / MATCH_FILE
    if path.is_file():
        stored = RoundResult.model_validate_json(path.read_text())
        loop.trials_done += sum(len(s.trials) for s in stored.studies)
        return stored
    loop.stage("match")
    full = [r for r in rounds if r.data_fraction == 1.0] or rounds
    bests = {a.name: _ranked(own_trials(full, a, arms), task)[:1] for a in arms}
    number = max((r.round for r in rounds), default=0) + 1
    studies = []
    for k, arm in enumerate(arms):
        if not bests[arm.name]:
            continue
        mine = bests[arm.name][0].params
        raw = [
            matched_point(mine, theirs[0].params, shared_names(plan))
            for other, theirs in bests.items()
            if other != arm.name and theirs
        ]
        points = [q for q in raw if q != mine and q not in raw[: raw.index(q)]]
        if not points:
            continue
        space = covering(states[arm.name].space, points)
        cfg = loop.config(
            plan,
            sampler="random",
            pruner="none",
            trials=len(points),
            warm_start=points,
            fixed={**plan.conditions, **arm.fixed},
            sampler_seed=loop.options.seed + ROUND_SEED_STRIDE * number + ARM_SEED_STRIDE * k,
        )
        name = study_name(loop.info.run_id, arms, arm, "match", "shared")
        tune(loop.url, name, task, loop.folder / "workspace", space, cfg, loop.reporter("match"))
        studies.append(
            summarize(loop.url, name, task, space, cfg).model_copy(
                update={"arm": arm.name, "sampler": MATCHED}
            )
        )
    loop.trials_done += sum(len(st.trials) for st in studies)
    result = RoundResult(round=number, phase=MATCHED, studies=studies)
    path.parent.mkdir(exist_ok=True)
    runs.write_atomic(path, result.model_dump_json(indent=2))
    return result


def matched_point(mine: dict[str, Any], theirs: dict[str, Any], shared: set[str]) -> dict[str, Any]:
    """An arm's own best with the shared values replaced by another arm's."""
    return {k: theirs[k] if k in shared and k in theirs else v for k, v in mine.items()}


def covering(space: list[SearchParam], points: list[dict[str, Any]]) -> list[SearchParam]:
    """The space widened just enough to hold the points exactly: another arm's revised range may reach
    past this arm's, and a point moved into range would no longer be the other arm's values."""
    out = []
    for p in space:
        values = [q[p.name] for q in points if p.name in q]
        if p.kind == "categorical":
            extra = [v for v in values if not p.contains(v)]
            out.append(p.model_copy(update={"choices": [*p.choices, *dict.fromkeys(extra)]}) if extra else p)  # type: ignore[misc]
        elif values:
            out.append(p.model_copy(update={"low": min(p.low, *values), "high": max(p.high, *values)}))  # type: ignore[type-var]
        else:
            out.append(p)
    return out
