"""Trials in a box (experiments.sandbox, experiments.boxed): task code sees no secret, writes nothing outside
the workspace, reaches no server, and an exhausted limit fails its trial alone.

Real runs: a real worker (`worker.serve`, in this process) on a journal file in tmp_path, its boxed child, and
a hostile script written here. The bubblewrap asserts are skipped only where bubblewrap does not run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import unavailable
from faults import METRIC, SCRIPT
from optuna.trial import TrialState

from experiments import runner, sandbox, worker
from experiments import storage as storages
from experiments.runner import StudySpec, Ticket

SECRETS = {
    "OPENAI_API_KEY": "sk-test-not-a-key",
    "RESEARCH_LOOP_API_KEY": "rl-test-not-a-key",
    "RESEARCH_LOOP_STORAGE": "postgresql://user:hunter2@127.0.0.1:5432/db",
    "HF_TOKEN": "hf_not_a_token",
}

# What a hostile edit does: read the keys and the storage URL, write outside its workspace, run a shell
# command there too, and connect to a server on loopback; what it saw is left in the workspace, the one folder
# it may write.
HOSTILE = """import json
import os
import socket
from pathlib import Path

SEEN = Path({seen!r})
OUTSIDE = [Path({outside!r}) / "marker", Path({run!r}) / "marker"]
PORTS = {ports!r}


def look():
    seen = {{name: os.environ.get(name) for name in {secrets!r}}}
    seen["cwd"], seen["home"] = os.getcwd(), os.environ.get("HOME")
    for path in OUTSIDE:
        try:
            path.write_text("written from a trial")
        except OSError as exc:
            seen.setdefault("write_errors", []).append(type(exc).__name__)
    os.system(f"echo shell > {{OUTSIDE[0].parent / 'shell-marker'}} 2>/dev/null")
    seen["connected"] = []
    for port in PORTS:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            seen["connected"].append(port)
        except OSError:
            pass
    SEEN.write_text(json.dumps(seen))
"""

CONTRACT = """
# --- hyperparameters ---
x = 0.5
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    look()
    return {"accuracy": 0.5}
"""

PLAIN = """
LEARNING_RATE = 0.5
look()
print(f"accuracy={LEARNING_RATE}")
"""


def _study(
    folder: Path, script: str, tickets: list[Ticket], box: sandbox.BoxSpec | None = None, pruner: str = "none"
) -> str:
    """A study of `script` in folder/workspace on a journal file in folder; its name."""
    spec = StudySpec(
        name="boxed",
        script=script,
        metric=METRIC,
        sampler="random",
        pruner=pruner,
        device="cpu",
        trial_timeout_s=60,
        patch_sha256=runner.workspace_sha256(folder / "workspace"),
        **({"sandbox": box.mode, "memory_limit_mb": box.memory_limit_mb} if box is not None else {}),
    )
    runner.ensure_study(str(folder / storages.JOURNAL_FILE), spec, tickets)
    return spec.name


def _trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
    storage = storages.open_storage(str(folder / storages.JOURNAL_FILE))
    return optuna.load_study(study_name="boxed", storage=storage).get_trials(deepcopy=False)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def listening() -> Iterator[int]:
    """A server on loopback that a trial outside the box could reach: its port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_the_environment_keeps_the_allow_list_and_drops_every_secret(tmp_path):
    environ = {
        **SECRETS,
        "PATH": "/usr/bin:/bin",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "RESEARCH_LOOP_SEED": "3",
        "RESEARCH_LOOP_CONFIG": "/home/u/research-loop.toml",
        "AWS_SECRET_ACCESS_KEY": "x",
        "PYTORCH_HUB_TOKEN": "x",
        "DATABASE_URL": "postgresql://u:p@h/db",
        "HOME": "/home/u",
        "SSH_AUTH_SOCK": "/run/user/0/agent",
    }
    env = sandbox.scrubbed_env(environ, tmp_path)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "RESEARCH_LOOP_SEED": "3",
        "HOME": str(tmp_path),
    }
    off = sandbox.unscrubbed_env(environ)
    assert "OPENAI_API_KEY" in off and not any(
        k in off for k in ("RESEARCH_LOOP_STORAGE", "RESEARCH_LOOP_API_KEY")
    )


@pytest.mark.parametrize("kind", ["contract", "plain"])
def test_a_hostile_script_sees_no_secret_writes_nothing_outside_and_reaches_no_server(
    tmp_path, secrets, listening, capsys, kind
):
    workspace, outside, seen = tmp_path / "run" / "workspace", tmp_path / "outside", tmp_path / "run" / "seen"
    workspace.mkdir(parents=True)
    outside.mkdir()
    looks = HOSTILE.format(
        seen=str(workspace / "seen.json"),
        outside=str(outside),
        run=str(seen.parent),
        ports=[listening, 5432],
        secrets=sorted(SECRETS),
    )
    (workspace / "train.py").write_text(looks + (CONTRACT if kind == "contract" else PLAIN))
    _study(workspace.parent, "train.py", [Ticket(seed=0)])
    assert worker.serve(str(workspace.parent / storages.JOURNAL_FILE), "boxed", workspace) == 1
    [trial] = _trials(workspace.parent)
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("error")
    looked = json.loads((workspace / "seen.json").read_text())
    assert {name: looked[name] for name in SECRETS} == dict.fromkeys(SECRETS), "no secret reached the script"
    assert looked["home"] != os.environ.get("HOME") and not Path(looked["home"]).exists(), "a scratch HOME"
    assert Path(looked["cwd"]).resolve().is_relative_to(workspace.parent.resolve())
    bwrap, why = sandbox.find_bwrap()
    if bwrap is None:
        unavailable(f"bubblewrap does not run here ({why}): no filesystem or network isolation to check")
    assert "sandbox: bubblewrap, no network" in capsys.readouterr().err
    assert not list(outside.iterdir()), "nothing was written outside the workspace"
    assert not (seen.parent / "marker").exists()
    assert looked["connected"] == [], "no server on loopback was reachable"


def test_the_preflight_runs_the_script_boxed_too(tmp_path, secrets, listening):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    looks = HOSTILE.format(
        seen=str(workspace / "seen.json"),
        outside=str(tmp_path),
        run=str(tmp_path),
        ports=[listening],
        secrets=sorted(SECRETS),
    )
    (workspace / "train.py").write_text(looks + CONTRACT)
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "experiments.preflight", str(workspace / "train.py"), str(out), "--metric"]
    done = subprocess.run([*cmd, "accuracy"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == {"accuracy": 0.5}
    looked = json.loads((workspace / "seen.json").read_text())
    assert {name: looked[name] for name in SECRETS} == dict.fromkeys(SECRETS)
    if sandbox.find_bwrap()[0] is not None:
        assert not (tmp_path / "marker").exists() and looked["connected"] == []


def test_a_trial_past_its_memory_limit_fails_alone_and_the_next_trial_of_the_worker_succeeds(tmp_path):
    workspace = tmp_path / "workspace"
    (workspace / "faults").mkdir(parents=True)
    shutil.copy2(SCRIPT, workspace / SCRIPT.name)
    tickets = [
        Ticket(seed=i, hparams={"fault": fault, "sleep_s": 0}) for i, fault in enumerate(["memory", "none"])
    ]
    _study(tmp_path, SCRIPT.name, tickets, sandbox.BoxSpec(memory_limit_mb=512))
    assert worker.serve(str(tmp_path / storages.JOURNAL_FILE), "boxed", workspace) == 2
    exhausted, after = sorted(_trials(tmp_path), key=lambda t: t.number)
    assert (
        exhausted.state == TrialState.FAIL and exhausted.user_attrs["error"] == "memory limit 512 MB exceeded"
    )
    assert after.state == TrialState.COMPLETE
    assert exhausted.system_attrs["worker"] == after.system_attrs["worker"]


REPORTS = """from experiments.training import report

# --- hyperparameters ---
quality = 0.9
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {"quality": quality, **(hparams or {})}
    trial.set_user_attr("number_seen", trial.number)
    for epoch in range(1, 4):
        report(trial, hp["quality"], epoch, train_loss=1 - hp["quality"])
    return {"accuracy": hp["quality"]}
"""


def test_a_boxed_scripts_reports_reach_the_real_trial_and_its_pruner(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "train.py").write_text(REPORTS)
    qualities = [0.9, 0.9, 0.9, 0.1, 0.1]
    tickets = [Ticket(seed=i, hparams={"quality": q}) for i, q in enumerate(qualities)]
    _study(tmp_path, "train.py", tickets, pruner="median")
    assert worker.serve(str(tmp_path / storages.JOURNAL_FILE), "boxed", workspace) == 5
    trials = sorted(_trials(tmp_path), key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED] * 2
    first = trials[0]
    assert first.intermediate_values == {1: 0.9, 2: 0.9, 3: 0.9}
    assert [p["epoch"] for p in first.user_attrs["curve"]] == [1.0, 2.0, 3.0]
    assert first.user_attrs["curve"][0]["train_loss"] == pytest.approx(0.1)
    assert [t.user_attrs["number_seen"] for t in trials] == [0, 1, 2, 3, 4]
    assert trials[3].intermediate_values == {1: 0.1}, "pruned at its first report past the start-up"


def test_require_refuses_to_run_without_bubblewrap_and_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox.isolation(sandbox.BoxSpec(mode="require"), environ={"PATH": str(tmp_path)})
    workspace = tmp_path / "workspace"
    (workspace / "faults").mkdir(parents=True)
    shutil.copy2(SCRIPT, workspace / SCRIPT.name)
    _study(tmp_path, SCRIPT.name, [Ticket(seed=0)], sandbox.BoxSpec(mode="require"))
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without bwrap
    with pytest.raises(sandbox.SandboxUnavailable, match=r"--sandbox require, but bwrap is not installed"):
        worker.serve(str(tmp_path / storages.JOURNAL_FILE), "boxed", workspace)
    assert [t.state for t in _trials(tmp_path)] == [TrialState.WAITING], "nothing ran"


def test_what_a_run_got_is_described_in_one_line():
    describe = sandbox.Isolation
    assert describe(kind="bubblewrap", memory_limit_mb=4096).describe() == "bubblewrap, no network, 4096 MB"
    assert (
        describe(kind="bubblewrap").describe() == "bubblewrap, no network, memory limit not enforced on CUDA"
    )
    assert describe(kind="none", memory_limit_mb=4096).describe() == (
        "none available: environment scrubbed, limits set, 4096 MB"
    )
    assert describe(mode="off", kind="off").describe() == "off (--sandbox off): no isolation"
    off = sandbox.isolation(sandbox.BoxSpec(mode="off", memory_limit_mb=2048))
    assert off.kind == "off" and off.memory_limit_mb == 2048
    assert sandbox.isolation(sandbox.BoxSpec(), workers=2, cuda=True).memory_limit_mb is None
    assert sandbox.default_memory_mb(1000) == sandbox.MIN_MEMORY_MB


def test_a_box_removes_the_scratch_folders_of_boxes_whose_process_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = tmp_path / f"{sandbox.SCRATCH_PREFIX}{gone.pid}-abc"  # a worker killed at a study's end
    alive = tmp_path / f"{sandbox.SCRATCH_PREFIX}{os.getpid()}-abc"
    left.mkdir()
    alive.mkdir()
    box = sandbox.Box(sandbox.BoxSpec(), tmp_path)
    assert not left.exists() and alive.exists() and box.scratch.parent == tmp_path
    box.close()
    assert not box.scratch.exists()


def test_code_imported_from_under_tmp_stays_importable_in_the_box(tmp_path, monkeypatch):
    """A fresh clone and its virtual environment under /tmp: the box's private /tmp would hide them (make
    demo in such a clone failed its preflight with "cannot import digits_cnn.py: it died")."""
    if sandbox.find_bwrap()[0] is None:
        unavailable(f"bubblewrap does not run here ({sandbox.find_bwrap()[1]}); apt-get install bubblewrap")
    lib, workspace = tmp_path / "lib", tmp_path / "workspace"
    lib.mkdir()
    workspace.mkdir()
    (lib / "under_tmp.py").write_text("VALUE = 7\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(lib)])
    assert lib.resolve() in sandbox.runtime_paths()
    box = sandbox.Box(sandbox.BoxSpec(sandbox="require"), workspace)
    try:
        probe = f"import sys; sys.path.append({str(lib)!r}); import under_tmp; print(under_tmp.VALUE)"
        cmd = box.command([sys.executable, "-c", probe], workspace)
        done = subprocess.run(cmd, env=box.env(), capture_output=True, text=True, timeout=60)
    finally:
        box.close()
    assert cmd[0] == sandbox.find_bwrap()[0]
    assert (done.returncode, done.stdout.strip()) == (0, "7"), done.stderr
