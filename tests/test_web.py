"""`research-loop serve` in a real headless Chromium, its guards against forged and outside requests, and
`research-loop export --mlflow` read back with MLflow's client; one real small run serves every test."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import optuna
import pytest
from conftest import unavailable
from test_review import SCRIPT as REVIEW_SCRIPT
from test_review import git
from test_review import make_run as make_approvable_run
from typer.testing import CliRunner

from agent import runs
from agent.cli import app
from agent.code import coder
from agent.config import Settings
from agent.loop import drive as loop
from agent.report import render as reporting
from agent.results import RunResult
from agent.review import history, review, web
from agent.review import mlflow as mlflow_export
from agent.schemas import RunInfo
from experiments import storage as storages

# Fast enough to run a whole loop in seconds: the metric is a smooth function of the hyperparameters, best
# with dropout (so the patch changes the script), and each epoch reports an intermediate value, as a real
# training script does.
SCRIPT = '''"""A stand-in for a training script whose metric is a smooth function of its hyperparameters."""

import math

from experiments.training import report

# --- hyperparameters ---
learning_rate = 0.01
dropout = 0.0
epochs = 3
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {"learning_rate": learning_rate, "dropout": dropout, "epochs": epochs, **(hparams or {})}
    accuracy = 0.9 - 0.01 * (math.log10(hp["learning_rate"]) + 2) ** 2 - (hp["dropout"] - 0.3) ** 2
    accuracy += 0.001 * seed
    for epoch in range(int(hp["epochs"])):
        report(trial, accuracy * (epoch + 1) / hp["epochs"], epoch)
    return {"accuracy": accuracy, **({"test_accuracy": accuracy - 0.005} if holdout else {})}
'''
IDEA = "Does dropout help my training script?"
TIMEOUT_MS = 15_000


@dataclass
class Finished:
    folder: Path
    repo: Path
    script: Path


def _init_repo(repo: Path, files: dict[str, str]) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "tester@example.com")
    git(repo, "config", "user.name", "Tester")
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "initial")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    """A real `research-loop run` on the script above, kept in a git repository: control and dropout arms,
    two trials each, two seeds, report and final patch; about 20 s on two cores."""
    tmp = tmp_path_factory.mktemp("served")
    repo = tmp / "repo"
    _init_repo(repo, {"train.py": SCRIPT})
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RESEARCH_LOOP_STORAGE", raising=False)
        mp.setenv("RESEARCH_LOOP_CONFIG", str(tmp / "absent.toml"))
        settings = Settings(reports_dir=tmp / "reports", device="cpu")
        options = loop.LoopOptions(
            idea=IDEA, script=repo / "train.py", trials=2, rounds=1, seeds=2, workers=2, device="cpu"
        )
        folder = loop.start(options, settings, ["research-loop", "run", IDEA])
        loop.drive(folder, settings, report=reporting.render)
    # two trials over two seeds support no change (tests/test_evidence.py), so the run's own final patch may
    # carry none; the page's tests show and approve one: the dropout arm's values, sealed as the loop seals
    arms = RunResult.model_validate_json((folder / "results.json").read_text()).arms
    treated = next(a for a in arms if a.role == "treatment").best
    coder.finalize_patch(folder, treated.params, str(folder / storages.JOURNAL_FILE))
    assert runs.load(folder).status == "awaiting_approval"
    yield Finished(folder=folder, repo=repo, script=repo / "train.py")


@dataclass
class Served:
    base: str
    token: str

    @property
    def start_url(self) -> str:
        return f"{self.base}/?token={self.token}"


@pytest.fixture
def serve(no_provider_env: None) -> Iterator[Any]:
    """Start `research-loop serve`'s app on a free loopback port for a reports dir; stopped after the test."""
    servers: list[tuple[Any, threading.Thread]] = []

    def start(reports: Path) -> Served:
        token = web.new_token()
        sock = web.bind("127.0.0.1", 0)
        server = web.server(web.Site(Settings(reports_dir=reports), token).app())
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return Served(base=f"http://127.0.0.1:{sock.getsockname()[1]}", token=token)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (never a browser Playwright downloads)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("no chromium to open the pages in; install Debian's: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def copy_run(run: Path, reports: Path) -> Path:
    """The run in a reports dir of the test's own: a decision made there leaves the module's run undecided."""
    copy = reports / run.name
    shutil.copytree(run, copy)
    return copy


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_the_list_shows_each_run_as_research_loop_list_does(finished, page, serve):
    served = serve(finished.folder.parent)
    page.goto(served.start_url)
    assert page.url == served.base + "/", "the token leaves the address bar once it is in the cookie"
    [row] = history.overview(finished.folder.parent)
    cells = page.locator(f'tr[data-run="{row.run_id}"] td')
    expect(cells).to_have_count(6)
    texts = cells.all_inner_texts()
    assert texts[:4] == [row.run_id, IDEA, row.status, row.conclusion]
    assert texts[4].startswith(row.gain) and texts[5] == row.decision == "pending"


def test_the_run_page_renders_the_report_its_plots_and_the_patch_with_its_checks(finished, page, serve):
    served = serve(finished.folder.parent)
    page.goto(served.start_url)
    page.click(f'a:text("{finished.folder.name}")')
    data = reporting.load_data(finished.folder / reporting.DATA)
    report = (finished.folder / reporting.HTML).read_text()
    headings = page.locator("article.report h2").all_inner_texts()
    assert headings == [html.unescape(h) for h in re.findall(r"<h2>(.*?)</h2>", report)], "as report.html"
    assert page.locator("article.report h1").inner_text() == f"Experiment Report: {data.title}"
    plots = page.locator("article.report img")
    expect(plots).to_have_count(len(data.plots))
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    for c in data.comparisons:
        expect(page.locator("ul.answer")).to_contain_text(c.statement)
    assert data.patch_changes, "the dropout arm's value is in or out"
    for c in data.patch_changes:
        said = f"{c.param} = {c.candidate}: {'in' if c.carried else 'out'}"
        expect(page.locator("#carried")).to_contain_text(said)
    for name in data.arm_variants:
        expect(page.locator("#carried")).to_contain_text(f"research-loop approve {data.run_id} --arm {name}")
    record, final = review.shown_patch(finished.folder)
    assert final is record.final and final.diff
    expect(page.locator("#patch")).to_contain_text("final patch (what approve applies)")
    assert page.locator("ul.checks li.passed").count() == len(final.checks)
    added = [
        line[1:] for line in final.diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]
    assert [t[1:] for t in page.locator("pre.diff span.add").all_inner_texts()] == added


def test_approve_on_the_page_is_refused_as_the_cli_refuses_then_applies_the_patch(
    finished, page, serve, tmp_path
):
    folder = copy_run(finished.folder, tmp_path / "reports")
    served = serve(folder.parent)
    original = finished.script.read_text()
    ledger = folder.parent / review.LEDGER
    page.goto(served.start_url)
    page.goto(f"{served.base}/runs/{folder.name}")
    finished.script.write_text(original + "# work in progress\n")
    page.click("#approve")
    refusal = page.locator("#refusal")
    expect(refusal).to_have_text("train.py has uncommitted changes; commit or stash them first")
    assert finished.script.read_text() == original + "# work in progress\n" and not ledger.exists()
    assert runs.load(folder).status == "awaiting_approval"
    finished.script.write_text(original)
    try:
        page.click("#approve")
        expect(page.locator("#decided")).to_contain_text("approved")
        record = coder.load_record(folder)
        assert finished.script.read_text() == record.final.files[record.script], "what approve writes"
        assert git(finished.repo, "status", "--porcelain") == " M train.py\n"
        [decision] = review.decisions(ledger)
        assert decision.action == "approve" and decision.run_id == folder.name and decision.commit is None
        assert decision.reason == review.measured_gain(folder)
        assert runs.load(folder).status == "approved"
        page.click("text=research-loop runs")
        expect(page.locator(f'tr[data-run="{folder.name}"] td').nth(5)).to_contain_text("approved")
        page.goto(f"{served.base}/runs/{folder.name}")
        assert page.locator("#approve").count() == 0, "a run is decided once"
    finally:
        git(finished.repo, "checkout", "--", "train.py")


def test_reject_on_the_page_needs_a_reason_and_records_it(page, serve, tmp_path):
    repo = tmp_path / "repo"
    _init_repo(repo, {"train.py": REVIEW_SCRIPT})
    folder = make_approvable_run(tmp_path, repo / "train.py")
    served = serve(folder.parent)
    page.goto(served.start_url)
    page.goto(f"{served.base}/runs/{folder.name}")
    expect(page.locator("#report")).to_contain_text("no report yet: `research-loop report")
    page.click("#reject")
    expect(page.locator("#refusal")).to_have_text('a rejection needs its reason: --reason "..."')
    page.fill("#reason", "the gain is inside the noise floor")
    page.click("#reject")
    expect(page.locator("#decided")).to_contain_text("rejected")
    [decision] = review.decisions(folder.parent / review.LEDGER)
    assert (decision.action, decision.reason) == ("reject", "the gain is inside the noise floor")
    assert (repo / "train.py").read_text() == REVIEW_SCRIPT


def test_approve_with_commit_on_the_page_commits_on_a_new_branch(page, serve, tmp_path):
    repo = tmp_path / "repo"
    _init_repo(repo, {"train.py": REVIEW_SCRIPT})
    folder = make_approvable_run(tmp_path, repo / "train.py")
    served = serve(folder.parent)
    page.goto(served.start_url)
    page.goto(f"{served.base}/runs/{folder.name}")
    page.check("#commit-box")
    page.click("#approve")
    expect(page.locator("#decided")).to_contain_text("approved")
    head = git(repo, "rev-parse", "HEAD").strip()
    expect(page.locator("#commit")).to_have_text(head)
    assert git(repo, "branch", "--show-current").strip() == f"research-loop/{folder.name}"
    assert git(repo, "status", "--porcelain") == "" and git(repo, "show", "main:train.py") == REVIEW_SCRIPT
    [decision] = review.decisions(folder.parent / review.LEDGER)
    assert decision.commit == head and decision.branch == f"research-loop/{folder.name}"


def test_requests_without_the_token_are_refused_and_change_nothing(serve, tmp_path):
    repo = tmp_path / "repo"
    _init_repo(repo, {"train.py": REVIEW_SCRIPT})
    folder = make_approvable_run(tmp_path, repo / "train.py")
    served = serve(folder.parent)
    approve = f"{served.base}/runs/{folder.name}/approve"
    with httpx.Client() as anyone:
        for refused in (
            anyone.get(served.base + "/"),
            anyone.get(f"{served.base}/runs/{folder.name}"),
            anyone.get(f"{served.base}/?token=not-{served.token}"),
            anyone.post(approve),
            anyone.post(approve, data={"token": "guess"}),
            anyone.post(f"{served.base}/runs/{folder.name}/reject", data={"reason": "forged"}),
        ):
            assert refused.status_code == 403 and "needs the token" in refused.text
            assert served.token not in refused.text
    with httpx.Client(follow_redirects=True) as browser_like:
        assert browser_like.get(served.start_url).status_code == 200  # now holds the cookie
        assert browser_like.post(approve, data={}).status_code == 403, "the cookie alone does not decide"
        forged = browser_like.post(
            approve, data={"token": served.token}, headers={"Origin": "http://evil.test"}
        )
        assert forged.status_code == 403 and "a form from http://evil.test is refused" in forged.text
        assert browser_like.get(approve).status_code == 405, "approve is POST only"
    assert (repo / "train.py").read_text() == REVIEW_SCRIPT
    assert runs.load(folder).status == "awaiting_approval" and not (folder.parent / review.LEDGER).exists()


def test_files_are_served_only_from_inside_the_run_folder(finished, serve, tmp_path):
    reports = tmp_path / "reports"
    folder = copy_run(finished.folder, reports)
    (tmp_path / "secret.txt").write_text("not for the web")
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    served = serve(reports)
    with httpx.Client(base_url=served.base, follow_redirects=True) as client:
        client.get(served.start_url)
        files = f"/runs/{folder.name}/files"
        plot = client.get(f"{files}/arms.png")
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        for outside in ("..%2F..%2Fsecret.txt", "link.txt", "%2Fetc%2Fpasswd", "..%2F" + review.LEDGER):
            refused = client.get(f"{files}/{outside}")
            assert refused.status_code == 403, outside
            assert "not for the web" not in refused.text and "only files inside it are served" in refused.text
        assert client.get("/runs/..%2F..%2Fsecret.txt").status_code == 404
        assert client.get(f"{files}/no-such.png").status_code == 404


def test_a_run_folder_that_cannot_be_read_is_said_so_in_one_line(serve, tmp_path):
    folder = tmp_path / "reports" / "20260101-000000-000000-broken"
    folder.mkdir(parents=True)
    (folder / runs.RUN_FILE).write_text("{not json")
    served = serve(folder.parent)
    with httpx.Client(base_url=served.base, follow_redirects=True) as client:
        client.get(served.start_url)
        listed = client.get("/")
        assert listed.status_code == 200 and "corrupt run.json" in listed.text
        for path in ("", "/progress"):
            broken = client.get(f"/runs/{folder.name}{path}")
            assert (
                broken.status_code == 500
                and "run.json is corrupted (ValidationError); the run cannot be read" in broken.text
            )


def test_a_running_runs_page_follows_its_progress_until_it_finishes(page, serve, tmp_path):
    reports = tmp_path / "reports"
    info = RunInfo(run_id=runs.new_run_id("live"), kind="run", status="running", stage="round 1", idea="live")
    folder = runs.create(reports, info)
    study = optuna.create_study(
        study_name=f"{info.run_id}-r1-default",
        storage=storages.open_storage(str(folder / storages.JOURNAL_FILE)),
        direction="maximize",
    )
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)

    def finish_trial(value: float) -> None:
        study.add_trial(
            optuna.create_trial(value=value, params={"x": value}, distributions={"x": distribution})
        )

    finish_trial(0.5)
    study.enqueue_trial({"x": 0.9})
    served = serve(reports)
    page.goto(served.start_url)
    page.goto(f"{served.base}/runs/{info.run_id}")
    row = page.locator('#progress tr[data-study="r1-default"] td')
    expect(row.nth(1)).to_have_text("1")
    expect(row.nth(5)).to_have_text("1")
    finish_trial(0.7)
    expect(row.nth(1)).to_have_text("2", timeout=4 * web.POLL_S * 1000)
    expect(row.nth(6)).to_have_text("0.7000")
    runs.save(folder, info.model_copy(update={"status": "interrupted"}))
    expect(page.locator("#status")).to_have_text("interrupted", timeout=4 * web.POLL_S * 1000)
    assert page.locator("#progress").count() == 0


def test_the_studies_open_in_optuna_dashboard(finished, page, serve):
    served = serve(finished.folder.parent)
    page.goto(served.start_url)
    page.goto(f"{served.base}/runs/{finished.folder.name}")
    with page.context.expect_page() as opened:
        page.click("#optuna-dashboard")
    dashboard = opened.value
    dashboard.wait_for_load_state()
    assert dashboard.title() == "Optuna Dashboard"
    studies = dashboard.request.get(urljoin(dashboard.url, "/api/studies")).json()
    names = {s["study_name"] for s in studies["study_summaries"]}
    result = RunResult.model_validate_json((finished.folder / "results.json").read_text())
    assert {s.study_name for r in result.rounds for s in r.studies} <= names


def _history(client: Any, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_the_mlflow_export_reads_back_with_mlflows_client(finished, tmp_path, monkeypatch, no_provider_env):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts a local store's artifacts in ./mlruns
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(finished.folder.parent))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exported = CliRunner().invoke(app, ["export", finished.folder.name[:20], "--mlflow", uri])
    assert exported.exit_code == 0, exported.output
    data = reporting.load_data(finished.folder / reporting.DATA)
    result = RunResult.model_validate_json((finished.folder / "results.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(finished.folder.name)
    every = client.search_runs([experiment.experiment_id], max_results=1000)
    part = {r.info.run_id: r.data.tags[mlflow_export.PART_TAG] for r in every}
    [parent] = [r for r in every if part[r.info.run_id] == "run"]
    trials = [r for r in every if part[r.info.run_id] == "trial"]
    said = f"exported {finished.folder.name}: {len(every)} MLflow runs ({len(trials)} trials) in experiment"
    assert said in " ".join(exported.stdout.split())
    assert parent.data.tags["outcome"] == data.verdict.outcome and parent.info.run_name == data.title
    assert parent.data.metrics["held_out_difference"] == pytest.approx(data.comparison.difference)
    assert parent.data.metrics["held_out_p_value"] == pytest.approx(data.comparison.p_value)
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "report.html", "report.json", "patch.diff", "plots"} <= artifacts
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {f"plots/{p.file}" for p in data.plots}

    arms = {r.data.tags["arm"]: r for r in every if part[r.info.run_id] == "arm"}
    assert set(arms) == {a.name for a in data.arms}
    for arm in data.arms:
        logged = arms[arm.name]
        assert logged.data.tags[mlflow_export.PARENT_TAG] == parent.info.run_id
        assert logged.data.params == {k: str(v) for k, v in arm.params.items()}
        assert _history(client, logged.info.run_id, "test_accuracy") == pytest.approx(arm.test)
    for c in data.comparisons:
        treated = arms[c.treatment].data
        assert treated.tags["verdict"] == c.verdict and treated.tags["control"] == c.control
        assert treated.metrics["vs_control_difference"] == pytest.approx(c.comparison.difference)

    studies = {r.data.tags["study"]: r for r in every if part[r.info.run_id] == "study"}
    stored = {s.study_name: s for r in result.rounds for s in r.studies}
    assert set(studies) == {row.study for row in data.strategies}
    assert len(trials) == sum(len(stored[name].trials) for name in studies)
    for name, logged in studies.items():
        nested = [t for t in trials if t.data.tags[mlflow_export.PARENT_TAG] == logged.info.run_id]
        assert sorted(int(t.data.tags["trial"]) for t in nested) == [t.number for t in stored[name].trials]
        for run in nested:
            trial = next(t for t in stored[name].trials if t.number == int(run.data.tags["trial"]))
            assert run.data.params == {k: str(v) for k, v in trial.params.items()}
            assert run.data.tags["state"] == trial.state
            if trial.state == "COMPLETE":
                assert run.data.metrics["accuracy"] == pytest.approx(trial.value)
            assert trial.intermediate and _history(client, run.info.run_id, "intermediate_value") == (
                pytest.approx(trial.intermediate)
            )

    with pytest.raises(mlflow_export.ExportError, match=f"{parent.info.run_id}\\); delete it there"):
        mlflow_export.export(finished.folder, uri)
    assert len(client.search_runs([experiment.experiment_id], max_results=1000)) == len(every)


def test_export_refuses_a_run_without_a_report_in_one_line(tmp_path, monkeypatch, no_provider_env):
    monkeypatch.chdir(tmp_path)
    repo = tmp_path / "repo"
    _init_repo(repo, {"train.py": REVIEW_SCRIPT})
    folder = make_approvable_run(tmp_path, repo / "train.py")
    refused = CliRunner().invoke(app, ["export", str(folder), "--mlflow", f"sqlite:///{tmp_path / 'm.db'}"])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "report.json cannot be read" in refused.stderr and "`research-loop report" in refused.stderr
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "mlruns").exists()
    nowhere = CliRunner().invoke(app, ["export", str(folder)])
    assert nowhere.exit_code == 2 and "--mlflow" in nowhere.stderr


def test_serve_prints_its_url_with_the_token_and_refuses_a_port_in_use(tmp_path, no_provider_env):
    held = web.bind("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        busy = CliRunner().invoke(app, ["serve", "--port", str(port)])
    finally:
        held.close()
    assert busy.exit_code == 2 and busy.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RESEARCH_LOOP_REPORTS_DIR": str(tmp_path)},
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        with httpx.Client(follow_redirects=True) as client:
            assert "No runs under" in client.get(url).text
            assert client.get(url.split("?")[0]).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_serving_beyond_this_machine_needs_allow_remote_and_warns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert refused.exit_code == 2
    assert "--allow-remote" in refused.stderr and "in clear" in refused.stderr
