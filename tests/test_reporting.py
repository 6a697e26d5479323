"""Reports rendered from real small runs: each conclusion reached by real data, numbers traced to storage, the
honesty guards refusing what cannot be reported, secrets kept out, and the HTML opened in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import unavailable
from typer.testing import CliRunner

from agent import runs
from agent.cli import app, tables
from agent.config import Settings
from agent.plan import planner
from agent.report import render as reporting
from agent.report.checks import ReportError
from agent.report.data import ReportData
from agent.results import RoundResult, RunResult
from agent.schemas import RunInfo
from experiments import registry, stats
from experiments.records import SearchParam, StudyResult
from experiments.results import records
from experiments.storage import redact
from experiments.tuning import TuningConfig, prepare_workspaces, tune_and_compare

PASSWORD = "pw-Qx7-never-shown"
API_KEY = "sk-test-Zr4-never-shown"
HEADINGS = [
    "# Experiment Report: ",
    "## Idea",
    "## Experiment Plan",
    "## Results",
    "## Benchmark Results",
    "### Comparison",
    "## Training",
    "## Search",
    "## Code Changes",
    "## Cost",
    "## Reproducibility",
    "## Conclusion",
]


def make_run(
    reports: Path,
    task_name: str,
    label: str,
    space: list[SearchParam],
    seeds: int,
    trials: int = 2,
    edits: tuple[tuple[str, str], ...] = (),
) -> Path:
    """A real `study` run: baseline, tuning of the workspace script (edited first), final re-runs; two workers
    with one torch thread each use two cores far better than one worker with two threads."""
    task = registry.get(task_name)
    info = RunInfo(
        run_id=runs.new_run_id(label), command=["research-loop", "study"], kind="study", task=task.name
    )
    folder = runs.create(reports, info)
    _, workspace = prepare_workspaces(folder, task)
    script = workspace / task.script.name
    for old, new in edits:
        assert script.read_text().count(old) == 1
        script.write_text(script.read_text().replace(old, new))
    cfg = TuningConfig(sampler="grid", pruner="none", trials=trials, seeds=seeds, workers=2, device="cpu")
    url = str(folder / "study.journal")
    result = tune_and_compare(url, info.run_id, folder, task, space, cfg)
    (folder / "results.json").write_text(result.model_dump_json(indent=2))
    info.status, info.storage = "finished", url
    runs.save(folder, info)
    reporting.render(folder, Settings())
    return folder


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def improved(reports: Path) -> Path:
    """Tuning the learning rate of digits-cnn upwards: its default (1e-3) undertrains in 6 epochs."""
    space = [
        SearchParam(name="learning_rate", kind="float", low=5e-3, high=2e-2, log=True),
        SearchParam(name="batch_size", kind="categorical", choices=[32, 64]),
    ]
    return make_run(reports, "digits-cnn", "improved", space, seeds=3, trials=3)


@pytest.fixture(scope="module")
def worse(reports: Path) -> Path:
    """A patch that cuts training to one epoch and adds a `momentum` knob that nothing reads, then searches it."""
    space = [SearchParam(name="momentum", kind="categorical", choices=[0.5, 0.9])]
    edits = (("epochs = 6\n", "epochs = 1\n"), ("channels = 8\n", "channels = 8\nmomentum = 0.9\n"))
    return make_run(reports, "digits-cnn", "worse", space, seeds=3, edits=edits)


@pytest.fixture(scope="module")
def unchanged(reports: Path) -> Path:
    """The identical script, searched over its own default: the candidate is the baseline."""
    space = [SearchParam(name="dropout", kind="categorical", choices=[0.0])]
    return make_run(reports, "tabular-mlp", "unchanged", space, seeds=2, trials=1)


@pytest.fixture(scope="module")
def broken(reports: Path) -> Path:
    """A patched script whose run() raises before training."""
    space = [SearchParam(name="dropout", kind="float", low=0.0, high=0.5)]
    raising = '    raise ValueError("broken on purpose")\n    hp = {**HYPERPARAMETERS'
    return make_run(
        reports, "tabular-mlp", "broken", space, seeds=1, edits=(("    hp = {**HYPERPARAMETERS", raising),)
    )


def data(folder: Path) -> ReportData:
    return reporting.load_data(folder / "report.json")


def markdown(folder: Path) -> str:
    return (folder / "report.md").read_text()


def test_tuned_learning_rate_is_reported_improved(improved: Path) -> None:
    d = data(improved)
    assert d.verdict.outcome == "improved"
    c = d.comparison
    assert c is not None and c.split == "test" and c.difference > c.noise_floor and c.p_value < 0.05
    text = markdown(improved)
    positions = [text.index(h) for h in HEADINGS]
    assert positions == sorted(positions)
    assert "**Conclusion: improved.**" in text
    assert f"research-loop reject {d.run_id}" in text
    assert "accuracy (maximize, higher is better)" in text
    assert "No code change" in text and "No plan" in text
    for plot in ("best_so_far.png", "importances.png", "learning_curves.png", "confusion.png"):
        assert (improved / plot).read_bytes().startswith(b"\x89PNG")
        assert f"]({plot})" in text


def test_patch_cutting_epochs_to_one_is_reported_worse(worse: Path) -> None:
    d = data(worse)
    assert d.verdict.outcome == "worse"
    assert d.comparison is not None and d.comparison.difference < 0
    text = markdown(worse)
    assert "-epochs = 6\n+epochs = 1" in text
    assert "Original (line" in text and "Updated (line" in text
    changed = {h.name: (h.baseline, h.candidate) for h in d.hyperparameters if h.changed}
    assert changed == {"epochs": (6, 1), "momentum": (None, d.candidate.params["momentum"])}


def test_different_hyperparameters_with_identical_metrics_are_flagged(worse: Path, improved: Path) -> None:
    (group,) = data(worse).identical
    assert sorted(p["momentum"] for p in group.params) == [0.5, 0.9]
    assert "Flag: identical metrics for different hyperparameters" in markdown(worse)
    assert data(improved).identical == []


def test_identical_script_is_no_significant_change(unchanged: Path) -> None:
    d = data(unchanged)
    assert d.verdict.outcome == "no significant change"
    assert d.comparison is not None and d.comparison.difference == 0
    assert "**Conclusion: no significant change.**" in markdown(unchanged)


def test_script_that_raises_is_reported_failed(broken: Path) -> None:
    d = data(broken)
    assert d.verdict.outcome == "failed"
    assert d.candidate is None and d.strategies[0].failed == 2
    text = markdown(broken)
    assert "**Conclusion: failed.**" in text and "broken on purpose" in text
    assert "No candidate" in text


def test_numbers_in_the_report_are_the_stored_trial_values(improved: Path, worse: Path) -> None:
    for folder in (improved, worse):
        d, text = data(folder), markdown(folder)
        url = str(folder / "study.journal")
        stored = {name.rsplit("-", 1)[-1]: records(url, name) for name in d.repro.studies}
        tuning = next(v for k, v in stored.items() if k not in ("baseline", "final"))
        for trial in tuning:
            assert f"| #{trial.number} | {trial.value:.4f} |" in text
        for role in ("baseline", "final"):
            for run in stored[role]:
                assert f"{run.metrics['test_accuracy']:.4f}" in text
                assert f"{run.metrics['accuracy']:.4f}" in text
        metric = registry.get("digits-cnn").metric
        assert stats.compare(stored["final"], stored["baseline"], metric, "test") == d.comparison
        c = d.comparison
        row = f"| held-out test | {c.candidate_mean:.4f} ± {c.candidate_std:.4f} | {c.baseline_mean:.4f} ±"
        assert row in text and f"{c.p_value:.3g}" in text


def test_different_runs_give_different_numbers_and_identical_runs_the_same(
    improved: Path, worse: Path
) -> None:
    a, b = data(improved).comparison, data(worse).comparison
    assert a.baseline_mean == b.baseline_mean and a.baseline_std == b.baseline_std  # the same baseline run
    assert a.candidate_mean != b.candidate_mean and a.difference != b.difference


def test_learning_curves_and_the_confusion_matrix_are_the_stored_runs(improved: Path) -> None:
    d = data(improved)
    url = str(improved / "study.journal")
    stored = {name.rsplit("-", 1)[-1]: records(url, name) for name in d.repro.studies}
    defaults, candidate = d.curves
    assert (defaults.label, defaults.role, candidate.label) == (
        "untuned defaults",
        "reference",
        "tuned candidate",
    )
    assert candidate.seeds == 3 and candidate.epochs == list(range(6))
    assert list(candidate.series) == ["train_loss", "loss", "accuracy"]
    last = [run.curve[-1] for run in stored["final"]]
    assert candidate.series["accuracy"][-1] == pytest.approx(sum(p["accuracy"] for p in last) / 3)
    # the last epoch's validation accuracy is the run's validation metric
    assert [p["accuracy"] for p in last] == [run.metrics["accuracy"] for run in stored["final"]]
    matrix = d.confusion.matrix
    assert d.confusion.seeds == 3 and len(matrix) == 10
    assert matrix == [[sum(r.confusion[i][j] for r in stored["final"]) for j in range(10)] for i in range(10)]
    diagonal = sum(matrix[i][i] for i in range(10)) / sum(map(sum, matrix))
    assert diagonal == pytest.approx(sum(r.metrics["test_accuracy"] for r in stored["final"]) / 3)
    text = markdown(improved)
    assert "](learning_curves.png)" in text and "](confusion.png)" in text
    assert "tuned candidate (3 seeds, 6 epochs)" in text and "Recall per class: 0: " in text


def test_a_learning_curve_edited_in_results_is_refused(improved: Path, tmp_path: Path) -> None:
    folder = _copy(improved, tmp_path)
    _edit_results(folder, lambda raw: raw["final"][0]["curve"][-1].update(accuracy=0.999))
    with pytest.raises(ReportError, match="final runs in results.json are not in the run's storage"):
        reporting.render(folder, Settings())


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def _edit_results(folder: Path, change) -> None:
    raw = json.loads((folder / "results.json").read_text())
    change(raw)
    (folder / "results.json").write_text(json.dumps(raw))


def test_results_that_disagree_with_storage_are_refused(improved: Path, tmp_path: Path) -> None:
    folder = _copy(improved, tmp_path)

    def inflate(raw: dict) -> None:
        raw["trials"][1]["value"] = 0.999

    _edit_results(folder, inflate)
    with pytest.raises(ReportError, match="differ from the stored"):
        reporting.render(folder, Settings())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.update(best=raw["final"][0]), "leakage"),
        (lambda raw: raw["best"].update(value=0.5), "not one of the tuning trials"),
        (lambda raw: raw["trials"][0]["metrics"].update(test_accuracy=0.9), "leakage"),
    ],
    ids=["best-from-held-out-runs", "best-not-a-trial", "tuning-saw-test"],
)
def test_candidate_selected_on_held_out_split_cannot_be_rendered(improved, tmp_path, change, message) -> None:
    folder = _copy(improved, tmp_path)
    (folder / "report.md").unlink()
    _edit_results(folder, change)
    with pytest.raises(ReportError, match=message):
        reporting.render(folder, Settings())
    assert not (folder / "report.md").exists()


def test_metric_direction_disagreeing_with_the_task_is_an_error(improved: Path, tmp_path: Path) -> None:
    folder = _copy(improved, tmp_path)
    _edit_results(folder, lambda raw: raw["metric"].update(direction="minimize"))
    with pytest.raises(ReportError, match="defines accuracy \\(maximize\\)"):
        reporting.render(folder, Settings())


def test_loop_results_render_with_their_plan_and_rounds(improved: Path, tmp_path: Path) -> None:
    """The loop's results.json (RunResult) over the same stored trials: plan section from the planner's partial."""
    folder = _copy(improved, tmp_path)
    study = StudyResult.model_validate_json((folder / "results.json").read_text())
    idea = "Does a larger learning rate help a small CNN on handwritten digits?"
    plan = planner.make_plan(idea, Settings(), "digits-cnn").model_copy(  # one tuned arm, as the study ran
        update={"search_space": study.search_space, "samplers": ["grid"], "arms": []}
    )
    result = RunResult(
        run_id=study.study_name.removesuffix("-tune-grid"),
        plan=plan,
        rounds=[RoundResult(round=1, phase="optimise", studies=[study])],
        best=study.best,
        best_strategy="grid",
        baseline=study.baseline,
        final=study.final,
        comparison=study.comparison,
        validation=study.validation,
        cost=study.cost,
        stop_reason="all 1 planned round(s) done",
    )
    (folder / "results.json").write_text(result.model_dump_json())
    info = runs.load(folder)
    runs.save(folder, info.model_copy(update={"kind": "run", "idea": idea}))
    reporting.render(folder, Settings())
    text = markdown(folder)
    assert f"# Experiment Report: {plan.title}" in text and f"> {idea}" in text
    assert "### Objective" in text and "### Hyperparameters" in text
    assert "Stopped: all 1 planned round(s) done." in text
    assert data(folder).verdict.outcome == data(improved).verdict.outcome == "improved"


def test_run_that_ended_without_results_is_reported_failed_with_its_error(tmp_path: Path) -> None:
    info = RunInfo(run_id="20260101-000000-000000-x", kind="study", task="digits-cnn", status="failed",
                   error="study: storage went away")  # fmt: skip
    folder = runs.create(tmp_path, info)
    reporting.render(folder, Settings())
    assert data(folder).verdict.outcome == "failed"
    assert "storage went away" in markdown(folder)
    runs.save(folder, info.model_copy(update={"status": "running"}))
    with pytest.raises(ReportError, match="still running"):
        reporting.render(folder, Settings())


def test_html_report_opens_in_headless_chromium_with_headings_and_images(
    improved: Path, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("no chromium to open the HTML report in; install Debian's: apt-get install -y chromium")
    page = tmp_path / "page.html"
    probe = "<script>onload=()=>{document.body.dataset.shown=[...document.images].filter(i=>i.naturalWidth>0).length}</script>"
    page.write_text((improved / "report.html").read_text().replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    headings = re.findall(r"<h([12])>(.*?)</h\1>", dom)
    assert [h for level, h in headings if level == "2"] == [
        h.removeprefix("## ") for h in HEADINGS[1:] if h.startswith("## ")
    ]
    assert headings[0][1].startswith("Experiment Report: ")
    assert dom.count('src="data:image/png;base64,') == 4
    assert 'data-shown="4"' in dom


def test_report_and_list_commands(
    improved: Path, worse: Path, unchanged: Path, reports: Path, monkeypatch
) -> None:
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(reports))
    cli = CliRunner()
    assert cli.invoke(app, ["reject", unchanged.name, "--reason", "no gain"]).exit_code == 0
    (improved / "report.md").unlink()
    done = cli.invoke(app, ["report", improved.name[:-3]])
    assert done.exit_code == 0, done.output
    assert "conclusion: improved" in done.output and (improved / "report.md").is_file()
    monkeypatch.setattr(tables.console, "width", 300)
    listed = cli.invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    expected = [(improved, "improved", "pending"), (worse, "worse", "pending"),
                (unchanged, "no significant change", "rejected ")]  # fmt: skip
    for folder, outcome, decision in expected:
        line = next(line for line in listed.output.splitlines() if folder.name in line)
        assert outcome in line and "accuracy (maximize)" in line and decision in line
    assert "no gain" in listed.output
    missing = cli.invoke(app, ["report", "no-such-run"])
    assert missing.exit_code == 2 and "no run 'no-such-run'" in missing.output
    assert "Traceback" not in missing.output


def with_password(url: str) -> tuple[str, str]:
    """The URL with a password in it (a planted one where the server trusts loopback), and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc)), PASSWORD


@pytest.mark.postgres
def test_study_command_renders_report_without_secrets(postgres_url: str, tmp_path: Path, monkeypatch) -> None:
    """A password in the storage URL and API keys in the environment appear in no file of the run folder."""
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("RESEARCH_LOOP_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    url, password = with_password(postgres_url)
    args = ["study", "--task", "tabular-mlp", "--sampler", "random", "--pruner", "none", "--trials", "2",
            "--seeds", "2", "--workers", "2", "--device", "cpu", "--storage", url]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    (folder,) = runs.all_folders(tmp_path)
    assert {"report.md", "report.html", "report.json", "best_so_far.png"} <= {
        p.name for p in folder.iterdir()
    }
    assert data(folder).repro.verified
    assert redact(url) in markdown(folder) and "***" in redact(url)
    blind = CliRunner().invoke(app, ["report", folder.name])
    assert blind.exit_code == 0 and not data(folder).repro.verified
    assert "**Not verified against storage:**" in markdown(folder) and "needs its password" in markdown(
        folder
    )
    again = CliRunner().invoke(app, ["report", folder.name, "--storage", url])
    assert again.exit_code == 0 and data(folder).repro.verified
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert password.encode() not in content, path
            assert API_KEY.encode() not in content, path
    assert all(password not in r.output for r in (done, blind, again))


def test_markdown_in_the_idea_is_shown_as_text_never_as_a_live_link(improved: Path, tmp_path: Path) -> None:
    folder = _copy(improved, tmp_path)
    info = runs.load(folder)
    info.idea = (
        "Tune the [learning rate](http://evil.example/x) ![pixel](http://evil.example/p.png) <b>now</b>"
    )
    runs.save(folder, info)
    reporting.render(folder)
    html = (folder / "report.html").read_text()
    assert "evil.example" in html and 'href="http://evil' not in html and 'src="http://evil' not in html
    assert "<b>now</b>" not in html and "[learning rate](http://evil.example/x)" in html
