"""Reports: a run folder's data computed and checked (report_data, report_checks), then drawn (report_plots) and
rendered from templates/report.md.j2 as report.md, report.html and report.json.

`render(folder)` is what `research-loop study`, the loop and `research-loop report` call; it only reads the run
folder, except for the files it writes inside it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from pydantic import ValidationError

import templates
from agent import config, runs
from agent.analyse.verdict import fmt, fmt_p, signed
from agent.config import Settings
from agent.plan import planner
from agent.report.checks import ReportError
from agent.report.data import ReportData, collect
from agent.report.plots import draw
from agent.schemas import Report

__all__ = [
    "ReportError",
    "load_data",
    "render",
    "to_html",
    "to_html_body",
    "to_markdown",
]

MARKDOWN = "report.md"
HTML = "report.html"
DATA = "report.json"


def _value(value: Any) -> str:
    if value is None:
        return "not set"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _params(values: dict[str, Any]) -> str:
    return _cell(", ".join(f"{k}={_value(v)}" for k, v in values.items()) or "defaults")


def _environment() -> Any:
    env = templates.environment().overlay()
    env.filters.update(fmt=fmt, signed=signed, p=fmt_p, value=_value, cell=_cell, params=_params)
    return env


def to_markdown(data: ReportData, img: Callable[[str], str] = str) -> str:
    """The report as markdown; `img` turns a plot's file name into the image source to link."""
    context: dict[str, Any] = {"d": data, "img": img, "has_plan": data.plan is not None}
    if data.plan is not None:
        context.update(planner.plan_context(data.plan, level=3))
    return _environment().get_template("report.md.j2").render(**context)


def to_html_body(data: ReportData, img: Callable[[str], str] = str) -> str:
    """The report's markdown as HTML, raw HTML in any text escaped: report.html's body, and the run page of
    `research-loop serve`, which links the plots instead of inlining them."""
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(to_markdown(data, img))


def to_html(data: ReportData, folder: Path) -> str:
    """The same report as one self-contained HTML page: plots inlined, raw HTML in any text escaped."""

    def inline(name: str) -> str:
        return "data:image/png;base64," + base64.b64encode((folder / name).read_bytes()).decode()

    body = to_html_body(data, inline)
    css = files(templates).joinpath("report.css").read_text()
    page = _environment().get_template("report.html.j2")
    return page.render(
        title=f"Experiment Report: {data.title}", css=css, body=body, outcome=data.verdict.outcome
    )


def render(folder: Path, settings: Settings | None = None) -> Report:
    """Check and render a run's report into its folder; raise ReportError when it cannot be made honestly."""
    data = collect(folder, settings or config.load())
    data = data.model_copy(update={"plots": draw(data, folder)})
    runs.write_atomic(folder / DATA, data.model_dump_json(indent=2))
    runs.write_atomic(folder / MARKDOWN, to_markdown(data))
    runs.write_atomic(folder / HTML, to_html(data, folder))
    return Report(
        run_id=data.run_id,
        markdown=str(folder / MARKDOWN),
        html=str(folder / HTML),
        plots=[str(folder / p.file) for p in data.plots],
        data=str(folder / DATA),
    )


def load_data(path: Path) -> ReportData:
    """A rendered report's data (report.json), as the templates saw it."""
    try:
        return ReportData.model_validate_json(path.read_text())
    except (ValidationError, OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} cannot be read ({type(exc).__name__}); re-render it") from None
