"""The commands that read and decide on finished runs: list, show, approve, reject, serve and export."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from rich.syntax import Syntax

from agent import config, runs
from agent.cli.tables import console, err, fail, print_json, print_table
from agent.review import history, review


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
        rows = history.overview(settings.reports_dir)
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


def approve(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id, unique prefix, or folder")],
    commit: Annotated[
        bool, typer.Option("--commit", help="commit on a new branch research-loop/<run id>")
    ] = False,
    trust_edits: Annotated[
        bool,
        typer.Option(
            "--trust-edits", help="apply a change that adds system imports, eval/exec or outside writes"
        ),
    ] = False,
    arm: Annotated[
        str | None,
        typer.Option(
            "--arm",
            metavar="NAME",
            help="apply this measured arm's variant (its own values as the defaults) instead of the "
            "recommended patch; the report lists the arms that have one",
        ),
    ] = None,
) -> None:
    """Apply a run's final patch (its code change with the best measured hyperparameters as the new defaults)
    to the target script with git. Refuses, changing nothing, unless the file is tracked, clean, and as the run
    found it, and the patch rebuilds exactly from what the run measured (sealed in its storage)."""
    settings = config.load()
    folder = find_run(settings, run_id)
    try:
        decision = review.approve(folder, commit=commit, trusted=trust_edits, settings=settings, arm=arm)
    except review.Refused as exc:
        refuse(exc)
    where = f"committed {decision.commit} on branch {decision.branch}" if decision.commit else "not committed"
    which = f" with arm {decision.arm}'s variant" if decision.arm else ""
    console.print(
        f"approved {decision.run_id}{which}: {decision.target} changed ({where})",
        highlight=False,
        markup=False,
    )
    console.print(decision.reason, highlight=False, markup=False)


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
    console.print(f"rejected {decision.run_id}: {decision.reason}", highlight=False, markup=False)


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


def loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (a loopback address, or localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    port: Annotated[int, typer.Option(help="port to listen on; 0 picks a free one")] = 8765,
    host: Annotated[
        str, typer.Option(help="address to bind; the default is reachable from this machine only")
    ] = "127.0.0.1",
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="allow a --host other machines can reach; the token then crosses the network in clear",
        ),
    ] = False,
) -> None:
    """Review runs in a browser: every run with its verdict, gain and decision; one run's report, patch and
    checks, its progress while it runs; Approve and Reject, which do exactly what `approve` and `reject` do.

    Prints a URL with a random token made at start; without it every request, and every approve or reject,
    is refused. Ctrl-C stops the server.
    """
    from agent.review import web  # the web stack loads only for this command

    settings = config.load()
    if not loopback(host) and not allow_remote:
        fail(
            f"--host {host} is reachable from other machines and the token would cross the network in clear "
            f"(no TLS); add --allow-remote to serve there anyway, or keep the default 127.0.0.1"
        )
    try:
        sock = web.bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    token = web.new_token()
    address, bound = sock.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    if not loopback(host):
        err.print(
            f"warning: serving on {shown}, reachable from other machines: the token in the URL crosses the "
            f"network in clear",
            highlight=False,
            markup=False,
        )
    where = settings.reports_dir.resolve()
    console.print(
        f"serving {where} on http://{shown}:{bound}/?token={token}", highlight=False, soft_wrap=True
    )
    console.print("open that URL (the token is needed); Ctrl-C stops the server", highlight=False)
    web.server(web.Site(settings, token, host).app()).run(sockets=[sock])


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
    from agent.review import mlflow as mlflow_export  # MLflow loads only for this command

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
