"""The live view of a run in progress, and driving a run to its end under it: what `run` and `resume` show
while the stages work, and the one place a run's interruption or failure is turned into what to do next."""

from __future__ import annotations

from pathlib import Path

from rich.live import Live
from rich.table import Table

from agent import config, runs
from agent.cli.tables import console, fail, print_conclusion
from agent.loop import drive as loop
from agent.loop.drive import LoopEvent
from agent.report import render as reporting


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
        if e.progress is None and e.message:
            grid.add_row(f"  {e.message}")
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
        with LiveView() as view, runs.library_warnings(folder):
            result = loop.drive(folder, settings, view.update, report=reporting.render)
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
        soft_wrap=True,
    )
