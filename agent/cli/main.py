"""The research-loop command line. The only module that prints to the terminal."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table

from agent import config, runs
from agent.loop import drive as loop
from agent.loop.drive import LoopEvent
from agent.plan import planner
from agent.plan.llm import errors_of
from agent.report import render as reporting
from agent.review import review
from agent.schemas import RunInfo
from experiments import data, registry, runner
from experiments import storage as storages
from experiments.program import discovered, is_program, parse_command
from experiments.records import StudyResult
from experiments.runner import Progress as StudyProgress
from experiments.runner import RunnerError
from experiments.samplers import PRUNERS, SAMPLERS
from experiments.script import ScriptContractError
from experiments.training import describe_device
from experiments.tuning import TuningConfig, tune_and_compare

T = TypeVar("T")
DEVICES = ("auto", "cpu", "cuda")

app = typer.Typer(
    name="research-loop",
    help="Turn a research idea into a tuned, verified and reviewable code change.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit: how every refusal ends."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(code)


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], whole: Sequence[str] = ()
) -> None:
    """Every table the CLI prints goes through here, so each reads the same in a terminal and in a pipe.

    In a terminal: a rich table whose first column (the name you type back) and the WHOLE columns never wrap,
    the rest folding to fit the window. Piped or redirected: plain tab-separated lines, a header first, then
    one line per row with every cell whole, whatever the width (tabs and line breaks inside a cell become
    spaces), for `grep`, `sort` and `cut -f`. Cells are plain text, never rich markup.
    """
    rows = [[str(cell) for cell in row] for row in rows]
    if console.is_terminal:
        table = Table(title=title)
        for i, column in enumerate(columns):
            table.add_column(column, overflow="fold", no_wrap=i == 0 or column in whole)
        for row in rows:
            table.add_row(*map(escape, row))
        console.print(table)
        return
    for row in (list(columns), *rows):
        typer.echo("\t".join(re.sub(r"[\t\r\n]+", " ", cell) for cell in row))


def print_json(value: Any) -> None:
    """Machine-readable output: pure JSON on stdout and nothing else (no markup, no extra lines)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@app.callback()
def main() -> None:
    """research-loop: idea -> plan -> patch -> Optuna studies -> report -> your approval.

    Every number in a report comes from a trial stored in the run's Optuna storage.
    """


@app.command()
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


@app.command()
def plan(
    idea: Annotated[str, typer.Argument(help="the research idea, in quotes")],
    llm: Annotated[
        str | None,
        typer.Option(help="offline | openai:<model> | openai-compatible:<model>; default: settings"),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="plan for this registered task, not the one the idea points at")
    ] = None,
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
        the_plan = planner.make_plan(idea, settings, task=task)
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
    console.print(f"plan: [bold]{folder / 'plan.md'}[/] (and plan.json)", highlight=False)


@contextmanager
def study_progress() -> Iterator[Callable[[str, StudyProgress], None]]:
    """A rich progress bar per study: trials done of total, best so far, pruned/failed, elapsed."""
    columns = (
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bars:
        ids: dict[str, TaskID] = {}

        def update(label: str, p: StudyProgress) -> None:
            if label not in ids:
                ids[label] = bars.add_task(label, total=p.total, detail="")
            best = "-" if p.best is None else f"{p.best:.4f}"
            detail = f"best {best}  running {p.running}  pruned {p.pruned}  failed {p.failed}"
            if p.lost:
                detail += f"  retried {p.lost}"
            bars.update(ids[label], completed=p.done, total=p.total, detail=detail)

        yield update


def resolve_task(
    name: str, script: Path | None, args: tuple[str, ...] = (), metric: str | None = None
) -> registry.Task:
    """A registered task, or the user's own script (with its own arguments, judged by `metric` when given);
    refuses with the list of tasks, the contract broken, or the metric whose direction is unknown."""
    if script is not None:
        if not script.is_file():
            fail(f"--script {script}: no such file")
        try:
            return registry.from_script(script, registry.metric_named(metric) if metric else None, args)
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


def check_data(task: registry.Task) -> None:
    """A registered task's hub data set or model, missing offline, refused before any run folder exists."""
    try:
        data.check_available(task.defaults)
    except data.DataUnavailable as exc:
        fail(str(exc))


def check_storage(url: str | None) -> None:
    if url is None:
        return
    try:
        storages.check(url)
    except storages.StorageUnavailable as exc:
        fail(str(exc))


def run_stage(folder: Path, info: RunInfo, stage: str, work: Callable[[], T]) -> T:
    """Run one stage, recording in run.json where the run stopped if it is interrupted or fails."""
    info.status, info.stage = "running", stage
    runs.save(folder, info)
    try:
        return work()
    except KeyboardInterrupt:
        info.status, info.error = "interrupted", f"interrupted during {stage}"
        runs.save(folder, info)
        fail(f"interrupted during {stage}; the run folder {folder} keeps every finished trial", code=130)
    except RUN_ERRORS as exc:
        info.status, info.error = "failed", f"{stage}: {exc}"
        runs.save(folder, info)
        fail(f"{stage} failed: {exc} (run folder: {folder})")


RUN_ERRORS = (RunnerError, storages.StorageUnavailable, OSError)


@app.command()
def study(
    task: Annotated[str, typer.Option(help="registered task (see `research-loop tasks`)")] = "digits-cnn",
    script: Annotated[Path | None, typer.Option(help="your own training script instead of a task")] = None,
    sampler: Annotated[
        str, typer.Option(help=f"one of: {', '.join(SAMPLERS)}; default: research-loop's own strategy")
    ] = "default",
    pruner: Annotated[str, typer.Option(help=f"one of: {', '.join(PRUNERS)}")] = "median",
    trials: Annotated[int, typer.Option(help="tuning trials (finished, pruned or failed)")] = 20,
    workers: Annotated[int, typer.Option(help="worker processes sharing the study")] = 1,
    seeds: Annotated[int, typer.Option(help="seeds for the baseline and for the best candidate")] = 3,
    seed: Annotated[int, typer.Option(help="first seed; also seeds the sampler")] = 0,
    data_fraction: Annotated[float, typer.Option(help="share of the training split to tune on")] = 1.0,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: sqlite:///file.db, postgresql://...; default a journal file in the run"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    trial_timeout: Annotated[float | None, typer.Option(help="seconds before one trial is stopped")] = None,
) -> None:
    """Tune a task with one Optuna study against its defaults; write a run folder with results.json.

    The baseline (the unmodified script with its defaults) and the best trial are both re-run over SEEDS seeds
    through the same worker code path, and compared on the held-out test split that tuning never saw.
    The storage opens in optuna-dashboard as it is: `optuna-dashboard <run folder>/study.journal`.
    """
    if sampler not in SAMPLERS:
        fail(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        fail(f"unknown pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")
    if min(trials, workers, seeds) < 1:
        fail("--trials, --workers and --seeds must each be at least 1")
    if not 0 < data_fraction <= 1:
        fail("--data-fraction must be in (0, 1]")
    if device not in DEVICES:
        fail(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    settings = config.load(storage=storage, device=device)
    the_task = resolve_task(task, script)
    if script is None:
        check_data(the_task)
    else:
        show_found(the_task)
        if data_fraction < 1 and not the_task.fractional:
            fail(f"--data-fraction: {script.name} is a plain script, which trains on all its data")
    check_storage(settings.storage)
    try:
        device_kind, device_name = describe_device(settings.device)
    except RuntimeError as exc:
        fail(str(exc))
    cfg = TuningConfig(
        sampler=sampler,
        pruner=pruner,
        trials=trials,
        seeds=seeds,
        workers=workers,
        seed=seed,
        device=device_kind,
        data_fraction=data_fraction,
        trial_timeout_s=trial_timeout or settings.trial_timeout_s,
    )
    info = RunInfo(
        run_id=runs.new_run_id(the_task.name),
        command=["research-loop", *map(storages.redact, sys.argv[1:])],
        kind="study",
        task=the_task.name,
    )
    folder = runs.create(settings.reports_dir, info)
    url = settings.storage or str(folder / storages.JOURNAL_FILE)
    info.storage = storages.redact(url)
    console.print(f"run folder: [bold]{folder}[/]   storage: {info.storage}", highlight=False)

    def work() -> StudyResult:
        with study_progress() as update:
            return tune_and_compare(
                url, info.run_id, folder, the_task, the_task.search_space, cfg, update, device_name
            )

    result = run_stage(folder, info, "study", work)
    runs.write_atomic(folder / "results.json", result.model_dump_json(indent=2))
    info.status, info.stage = "finished", "results"
    runs.save(folder, info)
    print_study_summary(result, folder)
    print_report(folder, settings)


def print_study_summary(result: StudyResult, folder: Path) -> None:
    counts = result.counts()
    metric = f"{result.metric.name} ({result.metric.direction})"
    console.print(
        f"trials: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed"
        f"   wall time {result.cost.wall_s:.1f} s",
        highlight=False,
    )
    if result.best is None:
        console.print("[red]no trial completed: nothing to compare[/]")
    else:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in result.best.params.items())
        console.print(
            f"best validation {metric}: {result.best.value:.4f} (trial {result.best.number}: {params})"
        )
    base = [r.value for r in result.baseline if r.value is not None]
    if base:
        console.print(
            f"baseline validation {metric}: {sum(base) / len(base):.4f} mean over {len(base)} seeds"
        )
    console.print(f"results: [bold]{folder / 'results.json'}[/]", highlight=False)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LiveView:
    """The run's live view: stage, round, trials done of the budget, best so far, elapsed and time left, and
    a bar for the study in progress."""

    def __init__(self) -> None:
        self.event: LoopEvent | None = None
        self.live = Live(self.render(), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)
        if not console.is_terminal:  # a piped live view ends without its line break
            console.line()

    def update(self, event: LoopEvent) -> None:
        if self.event is not None and event.stage != self.event.stage:
            console.print(f"[dim]{self.event.stage} done ({self.event.elapsed_s:.0f} s)[/]")
        self.event = event
        self.live.update(self.render())

    def render(self) -> Table:
        e = self.event
        grid = Table.grid(padding=(0, 2))
        if e is None:
            grid.add_row("[bold]starting[/]")
            return grid
        left = "-" if e.time_left_s is None else f"{e.time_left_s:.0f} s"
        best = "-" if e.best is None else f"{e.best:.4f}"
        rounds = f"{e.round}/{e.rounds}" if e.rounds else "-"
        grid.add_row(
            f"[bold]{e.stage}[/]",
            f"round {rounds}",
            f"trials {e.trials_done}/{e.trials_budget}",
            f"best {best}",
            f"elapsed {e.elapsed_s:.0f} s",
            f"time left {left}",
        )
        if e.progress is not None:
            p = e.progress
            width = 30
            filled = int(width * p.done / max(p.total, 1))
            study_best = "-" if p.best is None else f"{p.best:.4f}"
            grid.add_row(
                f"  {e.label}",
                "[green]" + "━" * filled + "[/][dim]" + "━" * (width - filled) + "[/]",
                f"{p.done}/{p.total}",
                f"best {study_best}",
                f"pruned {p.pruned} failed {p.failed}",
                f"retried {p.lost}" if p.lost else "",
            )
        return grid


def drive_run(folder: Path, settings: config.Settings) -> None:
    """Drive a run to its end with the live view; print where it stopped if it did not get there."""
    try:
        with LiveView() as view:
            result = loop.drive(folder, settings, view.update)
    except KeyboardInterrupt:
        fail(f"interrupted; continue with `research-loop resume {folder.name}`", code=130)
    except loop.LoopError as exc:
        fail(f"{exc} (run folder: {folder}; `research-loop resume {folder.name}` continues after a fix)")
    if result.stop_reason:
        console.print(f"stopped: {result.stop_reason}", highlight=False)
    print_conclusion(folder / reporting.DATA, folder / reporting.MARKDOWN, folder / reporting.HTML)
    console.print(
        f"review it, then:  research-loop approve {folder.name}   or   "
        f"research-loop reject {folder.name} --reason '...'",
        highlight=False,
    )


@app.command()
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
            "given on every run, before the trial's flags (instead of --script)"
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="the metric your plain script is judged by (default: the one it reports)"),
    ] = None,
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
    settings = config.load(llm=llm, storage=storage, device=device)
    args: list[str] = []
    if command is not None:
        if script is not None:
            fail("--command names the script itself: give --command or --script, not both")
        try:
            script, args = parse_command(command, Path.cwd())
        except ValueError as exc:
            fail(str(exc))
    if metric is not None and script is None:
        fail("--metric is for your own script (--script or --command); a task's metric is fixed")
    if task is not None and script is None:
        resolve_task(task, None)
    if script is not None:
        show_found(resolve_task(task or "", script, tuple(args), metric))
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
        trials=trials, rounds=rounds,
        timeout_s=timeout, workers=workers, seeds=seed_count, seeds_auto=seeds_auto, max_seeds=max_seeds,
        seed=seed, device=device_kind, device_name=device_name,
    )  # fmt: skip
    folder = loop.start(options, settings, ["research-loop", *map(storages.redact, sys.argv[1:])])
    console.print(f"run folder: [bold]{folder}[/]", highlight=False)
    drive_run(folder, settings)


@app.command()
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
    console.print(f"resuming {folder.name} from stage {info.stage}", highlight=False)
    drive_run(folder, settings)


def print_report(folder: Path, settings: config.Settings) -> None:
    """Render a run's report and say where it is and what it concluded; a report that fails a check is refused."""
    try:
        made = reporting.render(folder, settings)
    except reporting.ReportError as exc:
        fail(f"no report for {folder.name}: {exc}")
    print_conclusion(Path(made.data), made.markdown, made.html)


def print_conclusion(data: Path, markdown: Path | str, html: Path | str | None) -> None:
    """The report's computed conclusion, so the terminal never says something the report does not."""
    report = reporting.load_data(data)
    for c in report.comparisons:
        console.print(f"answer: [bold]{c.verdict}[/]  {escape(c.statement)}", highlight=False)
    outcome = report.verdict
    against = " (the patch's arm against the untuned defaults)" if report.candidate_arm else ""
    console.print(
        f"conclusion{against}: [bold]{outcome.outcome}[/]  {escape(outcome.summary)}", highlight=False
    )
    console.print(f"report: [bold]{markdown}[/]  (HTML: {html})", highlight=False)


@app.command()
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


@app.command("list")
def list_runs(
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print a JSON list instead of the table: per run the table's fields (run_id, idea, status, "
            "metric, gain, conclusion, decision) and its folder; `[]` when there is no run",
        ),
    ] = False,
) -> None:
    """All runs under the reports directory, oldest first: idea, status, metric, held-out gain, conclusion
    and decision.

    In a terminal a table; piped or redirected, tab-separated lines (a header, then one run per line).
    """
    settings = config.load()
    try:
        rows = reporting.overview(settings.reports_dir)
    except review.Refused as exc:
        fail(str(exc))
    if as_json:
        print_json(
            [{**r.model_dump(mode="json"), "folder": str(settings.reports_dir / r.run_id)} for r in rows]
        )
        return
    if not rows:
        console.print(f"no runs under {settings.reports_dir}", highlight=False)
        return
    columns = ("run", "idea", "status", "metric", "gain (held-out)", "conclusion", "decision")
    cells = [(r.run_id, r.idea, r.status, r.metric, r.gain, r.conclusion, r.decision) for r in rows]
    print_table(f"runs in {settings.reports_dir}", columns, cells, whole=("status",))


@app.command()
def worker(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    storage: Annotated[
        str | None,
        typer.Option(help="the run's storage URL (or set RESEARCH_LOOP_STORAGE, which `ps` does not show)"),
    ] = None,
    study: Annotated[str | None, typer.Option(help="work on this study only")] = None,
    workers: Annotated[int, typer.Option(help="worker processes on this machine")] = 1,
    wait: Annotated[float, typer.Option(help="seconds to wait for the run's next study before leaving")] = 60,
) -> None:
    """Join a run from this machine: run the waiting trials of its studies in WORKERS processes.

    Needs the project installed and a copy of the run folder, whose workspace holds the code the studies run;
    a copy whose code differs from the study's is refused. Leaves when no study of the run has had trials
    waiting for WAIT seconds.
    """
    if workers < 1:
        fail("--workers must be at least 1")
    if wait < 0:
        fail("--wait must be zero or more seconds")
    settings = config.load(storage=storage)
    folder = find_run(settings, run_id)
    info = runs.load(folder)
    try:
        url = loop.storage_url(folder, info, settings)
    except loop.LoopError as exc:
        fail(str(exc))
    check_storage(url)
    if study is not None and study not in storages.study_names(storages.open_storage(url)):
        fail(f"no study {study!r} in {storages.redact(url)}")
    console.print(
        f"joining {folder.name} on {storages.redact(url)} with {workers} worker(s)", highlight=False
    )
    if not storages.is_rdb(url):
        console.print(
            "note: a journal file is shared only by processes on the machine that holds it; workers on other "
            "machines need the run on PostgreSQL (--storage postgresql://...)",
            highlight=False,
        )
    prefix = f"{info.run_id}-"
    try:
        with study_progress() as update:
            done = runner.join(
                url,
                folder,
                info.run_id,
                study,
                workers,
                wait,
                lambda p: update(p.study.removeprefix(prefix), p),
            )
    except KeyboardInterrupt:
        fail("interrupted; the trials this machine was running go back to the queue", code=130)
    except RUN_ERRORS as exc:
        fail(str(exc))
    trials = sum(p.done for p in done)
    console.print(
        f"done: {len(done)} studies, {trials} trials finished or failed here or elsewhere", highlight=False
    )


def find_run(settings: config.Settings, run_id: str) -> Path:
    try:
        folder = runs.resolve(settings.reports_dir, run_id)
        runs.load(folder)
    except (runs.RunNotFound, runs.CorruptRun) as exc:
        fail(str(exc))
    return folder


def diff_view(diff: str) -> Syntax:
    return Syntax(diff, "diff", theme="ansi_dark", background_color="default", word_wrap=True)


def refuse(exc: review.Refused) -> NoReturn:
    """A refused decision: the conflicting diff first when there is one, then the one line that says why."""
    if exc.conflict:
        err.print(diff_view(exc.conflict))
    fail(str(exc))


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    commit: Annotated[
        bool, typer.Option("--commit", help="commit on a new branch research-loop/<run id>")
    ] = False,
) -> None:
    """Apply a run's final patch (its code change with the best measured hyperparameters as the new defaults)
    to the target script with git. Refuses, changing nothing, unless the file is tracked, clean, and as the run
    found it."""
    folder = find_run(config.load(), run_id)
    try:
        decision = review.approve(folder, commit=commit)
    except review.Refused as exc:
        refuse(exc)
    where = f"committed {decision.commit} on branch {decision.branch}" if decision.commit else "not committed"
    console.print(f"approved {decision.run_id}: {decision.target} changed ({where})", highlight=False)
    console.print(decision.reason, highlight=False)


@app.command()
def reject(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    reason: Annotated[str, typer.Option(help="why the change is not wanted (kept in the ledger)")],
) -> None:
    """Record that a run's change is not wanted, and why; no code is touched."""
    folder = find_run(config.load(), run_id)
    try:
        decision = review.reject(folder, reason)
    except review.Refused as exc:
        refuse(exc)
    console.print(f"rejected {decision.run_id}: {decision.reason}", highlight=False)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="print JSON instead: run_id, target, stage (final or proposed), final_params and the patch "
            "as patch.json holds it (edits, diff, rationale, files, checks, sha256)",
        ),
    ] = False,
) -> None:
    """Print a run's patch, highlighted, with its checks: the final one (what approve applies) once the study
    finished, else the proposed one.

    A run without a patch (a `study` run, or a run stopped before its patch) is refused with one line on
    stderr and a non-zero exit, with or without --json.
    """
    folder = find_run(config.load(), run_id)
    try:
        record, patch = review.shown_patch(folder)
    except review.Refused as exc:
        refuse(exc)
    if as_json:
        print_json(
            {
                "run_id": runs.load(folder).run_id,
                "target": str(record.target),
                "stage": "final" if record.final else "proposed",
                "final_params": record.final_params,
                "patch": patch.model_dump(mode="json"),
            }
        )
        return
    stage = "final patch (what approve applies)" if record.final else "proposed patch (not yet measured)"
    console.print(f"[bold]{stage}[/] for {escape(str(record.target))}", highlight=False)
    console.print(escape(patch.rationale), highlight=False)
    for check in patch.checks:
        mark = "[green]passed[/]" if check.passed else "[red]FAILED[/]"
        console.print(f"  {mark} {check.name}: {escape(check.detail)}", highlight=False)
    console.print(diff_view(patch.diff) if patch.diff else "(no change to the script)")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="port to listen on; 0 picks a free one")] = 8765,
    host: Annotated[
        str, typer.Option(help="address to bind; the default is reachable from this machine only")
    ] = "127.0.0.1",
) -> None:
    """Review runs in a browser: every run with its verdict, gain and decision; one run's report, patch and
    checks, its progress while it runs; Approve and Reject, which do exactly what `approve` and `reject` do.

    Prints a URL with a random token made at start; without it every request, and every approve or reject,
    is refused. Ctrl-C stops the server.
    """
    from agent.review.review import web  # the web stack loads only for this command

    settings = config.load()
    try:
        sock = web.bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    token = web.new_token()
    bound = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    where = settings.reports_dir.resolve()
    console.print(
        f"serving {where} on http://{shown}:{bound}/?token={token}", highlight=False, soft_wrap=True
    )
    console.print("open that URL (the token is needed); Ctrl-C stops the server", highlight=False)
    web.server(web.Site(settings, token, host).app()).run(sockets=[sock])


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    uri: Annotated[
        str | None,
        typer.Argument(
            metavar="URI",
            help="with --mlflow: the tracking URI (http://host:5000, sqlite:///mlflow.db, ...); default "
            "$MLFLOW_TRACKING_URI, else MLflow's local default: ./mlflow.db with artifacts in ./mlruns",
        ),
    ] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="export to MLflow")] = False,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment; default: the run id")] = None,
) -> None:
    """Send a reported run to a tracking tool: `export RUN --mlflow [URI]` writes its arms, studies and trials
    (parameters, metrics, intermediate values), the held-out comparison and the plots as MLflow runs under one
    experiment. Nothing is re-run: it reads report.json and results.json.
    """
    if not mlflow:
        fail("say where to export: --mlflow [URI]")
    folder = find_run(config.load(), run_id)
    from agent.review.review import mlflow as mlflow_export  # MLflow loads only for this command

    for name in ("mlflow", "alembic"):  # their INFO lines (creating tables...) are not this command's
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        done = mlflow_export.export(folder, uri, experiment)
    except mlflow_export.ExportError as exc:
        fail(str(exc))
    console.print(
        f"exported {folder.name}: {done.runs} MLflow runs ({done.trials} trials) in experiment "
        f"{done.experiment!r} at {done.tracking_uri}",
        highlight=False,
        soft_wrap=True,
    )
    if done.tracking_uri.startswith(("http://", "https://")):
        see = f"{done.tracking_uri}/#/experiments/{done.experiment_id}"
    else:
        see = f"mlflow ui --backend-store-uri {done.tracking_uri}"
    console.print(f"see it: {see}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    app()
