"""The commands that run Optuna studies directly: `study` (one task against its defaults) and `worker`
(joining a run's studies from another machine), with their progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from agent import config, runs
from agent.cli.review import find_run
from agent.cli.run import (
    DEVICES,
    METRIC_REGEX_HELP,
    MemoryOption,
    SandboxOption,
    check_storage,
    load_boxed,
    resolve_task,
    sandbox_of,
    show_found,
)
from agent.cli.tables import console, fail, print_report, print_study_summary
from agent.loop import drive as loop
from agent.schemas import RunInfo
from experiments import data, registry, runner
from experiments import storage as storages
from experiments.records import StudyResult
from experiments.results import Progress as StudyProgress
from experiments.runner import RunnerError
from experiments.samplers import PRUNERS, SAMPLERS
from experiments.training import describe_device
from experiments.tuning import TuningConfig, tune_and_compare

T = TypeVar("T")


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


def check_data(task: registry.Task) -> None:
    """A registered task's hub data set or model, missing offline, refused before any run folder exists."""
    try:
        data.check_available(task.defaults)
    except data.DataUnavailable as exc:
        fail(str(exc))


def run_stage(folder: Path, info: RunInfo, stage: str, work: Callable[[], T]) -> T:
    """Run one stage, recording in run.json where the run stopped if it is interrupted or fails."""
    info.status, info.stage = "running", stage
    runs.claim(info)
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


def study(
    task: Annotated[str, typer.Option(help="registered task (see `research-loop tasks`)")] = "digits-cnn",
    script: Annotated[Path | None, typer.Option(help="your own training script instead of a task")] = None,
    metric_regex: Annotated[str | None, typer.Option(help=METRIC_REGEX_HELP)] = None,
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
    sandbox: SandboxOption = None,
    memory_limit_mb: MemoryOption = None,
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
    settings = load_boxed(storage=storage, device=device, sandbox=sandbox, memory_limit_mb=memory_limit_mb)
    if metric_regex is not None and script is None:
        fail("--metric-regex is for your own script (--script); a task's metric is fixed")
    the_task = resolve_task(task, script, metric_regex=metric_regex)
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
        sandbox=settings.sandbox,
        memory_limit_mb=settings.memory_limit_mb,
    )
    info = RunInfo(
        run_id=runs.new_run_id(the_task.name),
        command=["research-loop", *map(storages.redact, sys.argv[1:])],
        kind="study",
        task=the_task.name,
        sandbox=sandbox_of(settings, workers, device_kind),
    )
    folder = runs.create(settings.reports_dir, info)
    url = settings.storage or str(folder / storages.JOURNAL_FILE)
    info.storage = storages.redact(url)
    console.print(f"run folder: [bold]{folder}[/]   storage: {info.storage}", highlight=False, soft_wrap=True)

    def work() -> StudyResult:
        with study_progress() as update, runs.library_warnings(folder):
            return tune_and_compare(
                url, info.run_id, folder, the_task, the_task.search_space, cfg, update, device_name
            )

    result = run_stage(folder, info, "study", work)
    runs.write_atomic(folder / "results.json", result.model_dump_json(indent=2))
    info.status, info.stage = "finished", "results"
    runs.save(folder, info)
    print_study_summary(result, folder)
    print_report(folder, settings)


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
