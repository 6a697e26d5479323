"""The commands that make and drive runs (tasks, plan, run, resume, report), with the task and storage
checks that `study` shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown

from agent import config, runs
from agent.cli.live import drive_run
from agent.cli.review import find_run
from agent.cli.tables import console, fail, print_json, print_prompt, print_report, print_table, waiting_for
from agent.loop import drive as loop
from agent.plan import planner
from agent.plan.llm import errors_of
from agent.plan.structured import schema_json
from agent.schemas import RunInfo
from experiments import command as command_line
from experiments import registry, sandbox
from experiments import storage as storages
from experiments.program import discovered, is_program
from experiments.sandbox import BoxSpec
from experiments.script import ScriptContractError
from experiments.training import describe_device

DEVICES = ("auto", "cpu", "cuda")
METRIC_REGEX_HELP = (
    "a regular expression that finds the metric on a line your plain script prints, the value in its first "
    "group (for output the built-in reading does not understand), e.g. 'bleu ([0-9.]+)'"
)
# How task code is boxed: the same options on `run` and `study`.
SandboxOption = Annotated[
    str | None,
    typer.Option(
        help="auto: bubblewrap where it runs here (read-only system, no network), else a scrubbed "
        "environment and limits; require: refuse without bubblewrap; off: no isolation (the report says so)"
    ),
]
MemoryOption = Annotated[
    int | None, typer.Option(help="address-space limit of each trial, in MB (default: a share of RAM)")
]


def tasks(
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print a JSON list instead of the table: per task its name, description, data, model, "
            "metric {name, direction} and default hyperparameters",
        ),
    ] = False,
) -> None:
    """List the registered tasks: data, metric and its direction, default hyperparameters.

    In a terminal a table; piped or redirected, tab-separated lines (a header, then one task per line), so
    `research-loop tasks | cut -f1` lists the names. --json gives every field for scripts.
    """
    every = [registry.get(name) for name in registry.names()]
    if as_json:
        print_json(
            [
                {
                    "name": t.name,
                    "description": t.description,
                    "data": t.data,
                    "model": t.model,
                    "metric": {"name": t.metric.name, "direction": t.metric.direction},
                    "defaults": t.defaults,
                }
                for t in every
            ]
        )
        return
    rows = [
        (
            t.name,
            t.data,
            f"{t.metric.name} ({t.metric.direction})",
            ", ".join(f"{k}={v}" for k, v in t.defaults.items()),
        )
        for t in every
    ]
    print_table("research-loop tasks", ("task", "data", "metric", "defaults"), rows)


def plan(
    idea: Annotated[str, typer.Argument(help="the research idea, in quotes")],
    llm: Annotated[
        str | None,
        typer.Option(help="offline | openai:<model> | openai-compatible:<model>; default: settings"),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="plan for this registered task, not the one the idea points at")
    ] = None,
    show_prompt: Annotated[
        bool, typer.Option("--show-prompt", help="print the prompt a model would get, and its size; no call")
    ] = False,
) -> None:
    """Turn a research idea into an experiment plan: plan.json and plan.md in a new run folder.

    Offline by default: deterministic rules over the task registry, no network. With --llm the plan comes
    from a chat model, and every answer is checked against the registry and repaired or refused.
    """
    try:
        settings = config.load(llm=llm)
    except ValueError as exc:
        fail(f"settings: {'; '.join(errors_of(exc))}")
    try:
        if show_prompt:
            print_prompt(planner.plan_prompt(idea, settings, task), schema_json(planner.PlanDraft), settings)
            return
        with waiting_for(settings.llm) as waiting:
            the_plan = planner.make_plan(idea, settings, task=task, waiting=waiting)
    except planner.PlanError as exc:
        fail(str(exc))
    info = RunInfo(
        run_id=runs.new_run_id(f"plan {the_plan.title}"),
        command=["research-loop", *sys.argv[1:]],
        kind="plan",
        task=the_plan.task,
        idea=the_plan.idea,
    )
    folder: Path | None = None
    try:
        folder = runs.create(settings.reports_dir, info)
        planner.write_plan(folder, the_plan)
        info.status, info.stage = "finished", "plan"
        runs.save(folder, info)
    except OSError as exc:
        if folder is not None:
            runs.discard(folder)
        fail(f"could not write the plan under {settings.reports_dir}: {exc}")
    console.print(Markdown(planner.render_markdown(the_plan)))
    console.print(f"plan: [bold]{folder / 'plan.md'}[/] (and plan.json)", highlight=False, soft_wrap=True)


def resolve_task(
    name: str,
    script: Path | None,
    args: tuple[str, ...] = (),
    metric: str | None = None,
    metric_regex: str | None = None,
) -> registry.Task:
    """A registered task, or the user's own script (with its own arguments, judged by `metric` when given,
    read from its output by `metric_regex` when given); refuses with the list of tasks, the contract broken,
    the metric whose direction is unknown, or a regex that cannot read one."""
    if script is not None:
        if not script.is_file():
            fail(f"--script {script}: no such file")
        try:
            named = registry.metric_named(metric) if metric else None
            return registry.from_script(script, named, args, metric_regex)
        except UnicodeDecodeError:
            fail(f"--script {script}: not a UTF-8 text file")
        except (ScriptContractError, OSError, ValueError) as exc:
            fail(str(exc))
    try:
        return registry.get(name)
    except registry.UnknownTask as exc:
        fail(str(exc))


def show_found(task: registry.Task) -> None:
    """A plain script's hyperparameters as discovery found them, with where each lives, the metric it is judged
    by and how it takes a seed: what the plan can search, shown before anything runs."""
    source = task.script.read_text()
    if not is_program(source):
        return
    found = discovered(source, str(task.script))
    rows = [(h.name, repr(h.default), h.where) for h in found.hyperparameters]
    print_table(f"{task.script.name}: hyperparameters found", ("name", "default", "where"), rows)
    seed = f"{found.seed_flag} and " if found.seed_flag else ""
    seed += (
        f"{found.seed_sites} literal seed(s) set per run" if found.seed_sites else "RESEARCH_LOOP_SEED only"
    )
    command = " ".join(["python", task.script.name, *task.script_args])
    console.print(
        f"{task.script.name} runs as a program ({command} + the trial's flags), judged by {task.metric.name} "
        f"({task.metric.direction}); seed: {seed}",
        highlight=False,
        soft_wrap=True,
    )
    if task.fixed:
        console.print(
            "set by the command, so held fixed for every arm and seed (never searched, never written back): "
            + ", ".join(command_line.describe(task.fixed)),
            highlight=False,
            soft_wrap=True,
        )


def check_storage(url: str | None) -> None:
    if url is None:
        return
    try:
        storages.check(url)
    except storages.StorageUnavailable as exc:
        fail(str(exc))


def load_boxed(**overrides: object) -> config.Settings:
    """Settings with the box checked now: `--sandbox require` without bubblewrap is refused before anything
    is created, with what to install."""
    if overrides.get("sandbox") not in (None, "auto", "require", "off"):
        fail(f"--sandbox takes auto, require or off, not {overrides['sandbox']!r}")
    settings = config.load(**overrides)
    sandbox_of(settings)
    return settings


def sandbox_of(settings: config.Settings, workers: int = 1, device: str = "cpu") -> str:
    """What isolation task code gets here, as the report states it; fails for `require` without bubblewrap."""
    spec = BoxSpec(mode=settings.sandbox, memory_limit_mb=settings.memory_limit_mb)
    try:
        return sandbox.isolation(spec, workers, cuda=device == "cuda").describe()
    except sandbox.SandboxUnavailable as exc:
        fail(str(exc))


def run(
    idea: Annotated[str, typer.Argument(help="the research idea, in a sentence")],
    llm: Annotated[
        str | None, typer.Option(help="offline (default), openai:<model>, openai-compatible:<model>")
    ] = None,
    task: Annotated[str | None, typer.Option(help="registered task; default: chosen by the planner")] = None,
    script: Annotated[Path | None, typer.Option(help="your own training script instead of a task")] = None,
    command: Annotated[
        str | None,
        typer.Option(
            help='your plain script with arguments of its own, e.g. "python train.py --data data.csv": '
            "given on every run, before the trial's flags (instead of --script); a flag it sets is held fixed "
            "for every arm and seed, never searched"
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="the metric your plain script is judged by (default: the one it reports)"),
    ] = None,
    metric_regex: Annotated[str | None, typer.Option(help=METRIC_REGEX_HELP)] = None,
    trials: Annotated[
        int | None, typer.Option(help="tuning trials over all rounds (default: the plan's)")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(help="rounds of search and analysis (default: the plan's)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="wall-clock seconds for the whole run")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes per study")] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="seeds for the baseline and the finalists: a number, or `auto` to add two at a time (up to "
            "--max-seeds) until the comparison's interval excludes 0, corrected for the extra looks"
        ),
    ] = None,
    max_seeds: Annotated[int, typer.Option(help="the most seeds `--seeds auto` may use")] = 10,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL; default: a journal file in the run")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="seeds the samplers and the first training seed")] = 0,
    sandbox: SandboxOption = None,
    memory_limit_mb: MemoryOption = None,
    trust_edits: Annotated[
        bool,
        typer.Option(
            "--trust-edits",
            help="let a model-written change run although it adds system imports, eval/exec or writes "
            "outside the script's folder (read its patch.diff first)",
        ),
    ] = False,
) -> None:
    """From an idea to a report and a patch awaiting your approval: plan, patch, baseline, rounds of Optuna
    studies with analysis between them, finalists on the held-out split, report.

    Interrupted runs continue with `research-loop resume <run>`; nothing already stored runs twice.
    """
    if device not in DEVICES:
        fail(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    seeds_auto = seeds is not None and seeds.strip().lower() == "auto"
    if seeds is not None and not seeds_auto and not seeds.strip().isdigit():
        fail(f"--seeds takes a number or `auto`, not {seeds!r}")
    seed_count = None if seeds is None or seeds_auto else int(seeds)
    if seeds_auto and not 2 <= max_seeds <= 50:
        fail("--max-seeds must be between 2 and 50")
    for name, value in (
        ("--trials", trials),
        ("--rounds", rounds),
        ("--workers", workers),
        ("--seeds", seed_count),
    ):
        if value is not None and value < 1:
            fail(f"{name} must be at least 1")
    if timeout is not None and timeout <= 0:
        fail("--timeout must be a positive number of seconds")
    settings = load_boxed(
        llm=llm, storage=storage, device=device, sandbox=sandbox, memory_limit_mb=memory_limit_mb,
        trust_edits=trust_edits or None,
    )  # fmt: skip
    for name, value, cap, setting in (
        ("--trials", trials, settings.max_trials, "max_trials"),
        ("--rounds", rounds, settings.max_rounds, "max_rounds"),
    ):
        if value is not None and value > cap:
            fail(
                f"{name} {value} is over the cap of {cap}; raise {setting} in research-loop.toml "
                f"(or RESEARCH_LOOP_{setting.upper()}) to allow more"
            )
    args: list[str] = []
    if command is not None:
        if script is not None:
            fail("--command names the script itself: give --command or --script, not both")
        try:
            script, args = command_line.parse(command, Path.cwd())
        except ValueError as exc:
            fail(str(exc))
    if (metric is not None or metric_regex is not None) and script is None:
        fail("--metric is for your own script (--script or --command); a task's metric is fixed")
    if task is not None and script is None:
        resolve_task(task, None)
    if script is not None:
        show_found(resolve_task(task or "", script, tuple(args), metric, metric_regex))
    try:
        planner.check_idea(idea)
    except planner.PlanError as exc:
        fail(str(exc))
    check_storage(settings.storage)
    try:
        device_kind, device_name = describe_device(settings.device)
    except RuntimeError as exc:
        fail(str(exc))
    options = loop.LoopOptions(
        idea=idea, task=task, script=script.resolve() if script else None, script_args=args, metric=metric,
        metric_regex=metric_regex, trials=trials, rounds=rounds,
        timeout_s=timeout, workers=workers, seeds=seed_count, seeds_auto=seeds_auto, max_seeds=max_seeds,
        seed=seed, device=device_kind, device_name=device_name, trust_edits=settings.trust_edits,
        box=BoxSpec(mode=settings.sandbox, memory_limit_mb=settings.memory_limit_mb),
    )  # fmt: skip
    folder = loop.start(options, settings, ["research-loop", *map(storages.redact, sys.argv[1:])])
    console.print(f"run folder: [bold]{folder}[/]", highlight=False, soft_wrap=True)
    drive_run(folder, settings)


def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    storage: Annotated[str | None, typer.Option(help="the run's storage URL, if it needs a password")] = None,
) -> None:
    """Continue an interrupted run from its last finished stage, reusing every stored trial."""
    settings = config.load(storage=storage)
    folder = find_run(settings, run_id)
    info = runs.load(folder)
    if info.kind != "run":
        fail(f"{folder.name} is a `{info.kind}` run; only `research-loop run` runs can be resumed")
    if info.status in ("awaiting_approval", "approved", "rejected", "finished"):
        fail(f"{folder.name} already finished ({info.status}); see {folder / 'report.md'}")
    if info.status in runs.LIVE and runs.driver_alive(info) is True:
        fail(
            f"{folder.name} is still running (process {info.owner}); wait for it to end, or stop it "
            f"(Ctrl-C or kill) and resume then"
        )
    console.print(f"resuming {folder.name} from stage {info.stage}", highlight=False)
    drive_run(folder, settings)


def report(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    storage: Annotated[str | None, typer.Option(help="the run's storage URL, if it needs a password")] = None,
) -> None:
    """(Re)render a run's report from its stored trials: report.md, report.html, plots and report.json.

    Every trial in results.json is read back from the run's Optuna storage first; a report that would not
    match it, or whose candidate was selected on the held-out split, is refused.
    """
    settings = config.load(storage=storage)
    print_report(find_run(settings, run_id), settings)
