"""The bad-input corpus (tests/data/bad_inputs/cases.json) and how one case is played through the CLI.

Shared by tests/test_bad_inputs.py, which asserts each case, and bench/reliability.py, which counts them.
A case runs in a sandbox folder (the working directory, with `reports/` and a user's `project/`), against the
scripted OpenAI-compatible server when it has LLM replies, and is judged on: the exit code, one `error:` line
naming the problem and nothing else on stderr, no traceback, no secret echoed, and no file changed outside
the run folder it may create.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fake_openai import FakeOpenAI, Reply, error, text, tool
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from agent import config
from agent.cli import app
from agent.loop import drive as loop

CASES = Path(__file__).parent / "data" / "bad_inputs" / "cases.json"
FAKE_LLM = "openai-compatible:fake"
USER_SCRIPT = Path(__file__).parent / "data" / "faulty_train.py"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Setup(Strict):
    """The state a case starts from, inside the sandbox; `{RUN}` in a path is the run folder it creates."""

    run: dict[str, Any] | None = Field(default=None, description="LoopOptions of a `run` folder to create")
    files: dict[str, Any] = Field(default_factory=dict, description="path -> text (or {'latin1': ...} bytes)")
    symlinks: dict[str, str] = Field(default_factory=dict, description="path -> target, both in the sandbox")
    remove: list[str] = Field(default_factory=list)


class Expect(Strict):
    exit: int = 2
    error: str = Field(default="", description="text the one `error:` line must contain")
    run_folder: bool = Field(default=False, description="the command may leave a new run folder")
    absent: list[str] = Field(default_factory=list, description="text that must appear nowhere in the output")
    plan: dict[str, Any] = Field(
        default_factory=dict, description="dotted path -> value in the new plan.json"
    )


class Case(Strict):
    id: str
    category: str
    argv: list[Any]
    env: dict[str, str] = Field(default_factory=dict)
    llm: list[dict[str, Any]] = Field(default_factory=list, description="the scripted server's replies")
    setup: Setup = Field(default_factory=Setup)
    expect: Expect


class Outcome(BaseModel):
    case: Case
    exit_code: int
    stdout: str
    stderr: str
    exception: str | None
    changed: list[str]
    run_folders: list[str]
    plan: dict[str, Any] | None = None

    def problems(self) -> list[str]:
        """How the outcome differs from the expected clear refusal (or success); empty when it was handled."""
        expect, out = self.case.expect, []
        if self.exception:
            out.append(f"raised {self.exception}")
        if self.exit_code != expect.exit:
            out.append(f"exit code {self.exit_code}, expected {expect.exit}")
        if expect.exit != 0:
            lines = self.stderr.splitlines()
            if len(lines) != 1 or not lines[0].startswith("error: "):
                out.append(f"stderr is not one error line: {self.stderr[:300]!r}")
            if expect.error not in self.stderr:
                out.append(f"error line lacks {expect.error!r}: {self.stderr[:300]!r}")
        if "Traceback" in self.stdout + self.stderr:
            out.append("a traceback was printed")
        out += [f"{s!r} was echoed" for s in expect.absent if s in self.stdout + self.stderr]
        out += [f"{path} changed" for path in self.changed]
        if self.run_folders and not expect.run_folder:
            out.append(f"left a run folder {self.run_folders}")
        for dotted, value in expect.plan.items():
            got = _dig(self.plan or {}, dotted)
            if got != value:
                out.append(f"plan {dotted} is {got!r}, expected {value!r}")
        return out


def load() -> list[Case]:
    data = json.loads(CASES.read_text())
    fragments = data["fragments"]
    return [Case.model_validate(_expand(case, fragments)) for case in data["cases"]]


def _expand(value: Any, fragments: dict[str, Any]) -> Any:
    """`{"@": name, ...}` is the named fragment with those keys replaced; `{"repeat": s, "times": n}` is s * n."""
    if isinstance(value, list):
        return [_expand(v, fragments) for v in value]
    if not isinstance(value, dict):
        return value
    if "repeat" in value and set(value) == {"repeat", "times"}:
        return value["repeat"] * value["times"]
    if "@" in value:
        over = {k: v for k, v in value.items() if k != "@"}
        return _expand({**fragments[value["@"]], **over}, fragments)
    return {k: _expand(v, fragments) for k, v in value.items()}


def _dig(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _reply(spec: dict[str, Any], sandbox: Path) -> Reply:
    [(kind, body)] = spec.items()
    body = json.loads(json.dumps(body).replace("{SANDBOX}", str(sandbox)))
    if kind == "tool":
        return tool(body)
    if kind == "text":
        return text(body)
    if kind == "error":
        return error(*body)
    raise ValueError(f"unknown reply kind {kind!r}")


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


@contextlib.contextmanager
def _sandboxed(sandbox: Path, env: dict[str, str]) -> Iterator[None]:
    """Run in the sandbox with only the case's own research-loop settings in the environment."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for name in list(os.environ):
        if name.startswith("RESEARCH_LOOP_") or name == "OPENAI_API_KEY":
            del os.environ[name]
    os.environ.update(
        {"RESEARCH_LOOP_REPORTS_DIR": str(sandbox / "reports"), "RESEARCH_LOOP_CONFIG": "absent.toml", **env}
    )
    os.chdir(sandbox)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _prepare(case: Case, sandbox: Path) -> str:
    """Build the case's starting state; return the id of the run folder it made ('' when none)."""
    (sandbox / "reports").mkdir()
    (sandbox / "project").mkdir()
    (sandbox / "project" / "train.py").write_text(USER_SCRIPT.read_text())
    (sandbox / "project" / "victim.py").write_text("precious = True\n")
    run_id = ""
    if case.setup.run is not None:
        options = loop.LoopOptions.model_validate({"device": "cpu", **case.setup.run})
        run_id = loop.start(options, config.load(), ["research-loop", "run", options.idea]).name
    for path, content in case.setup.files.items():
        target = sandbox / path.replace("{RUN}", f"reports/{run_id}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            target.write_bytes(content["latin1"].encode("latin-1"))
        else:
            target.write_text(content)
    for path in case.setup.remove:
        (sandbox / path.replace("{RUN}", f"reports/{run_id}")).unlink()
    for path, where in case.setup.symlinks.items():
        link = sandbox / path.replace("{RUN}", f"reports/{run_id}")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(sandbox / where)
    return run_id


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def play(case: Case, sandbox: Path) -> Outcome:
    """Play one case through the CLI in a fresh sandbox folder."""
    sandbox.mkdir(parents=True)
    with _sandboxed(sandbox, case.env):
        run_id = _prepare(case, sandbox)
        argv = [str(a).replace("{RUN}", run_id).replace("{SANDBOX}", str(sandbox)) for a in case.argv]
        before = _snapshot(sandbox)
        with contextlib.ExitStack() as stack:
            if case.llm:
                server = stack.enter_context(FakeOpenAI([_reply(r, sandbox) for r in case.llm]))
                os.environ.update(
                    {"RESEARCH_LOOP_BASE_URL": server.base_url, "RESEARCH_LOOP_LLM_REPAIRS": "0"}
                )
            result = CliRunner().invoke(app, argv)
    after = _snapshot(sandbox)
    new_runs = sorted(
        {Path(p).parts[1] for p in after if p.startswith("reports/") and p.count("/") >= 1}
        - {run_id}
        - {Path(p).parts[1] for p in before if p.startswith("reports/") and p.count("/") >= 1}
    )
    allowed = [f"reports/{r}" for r in new_runs] + ([f"reports/{run_id}"] if run_id else [])
    kept = {
        path.replace("{RUN}", f"reports/{run_id}") for path in case.setup.files
    }  # a corrupted file is evidence
    changed = sorted(
        p
        for p in set(before) | set(after)
        if before.get(p) != after.get(p) and (not any(_inside(p, a) for a in allowed) or p in kept)
    )
    plan_file = next((sandbox / "reports" / r / "plan.json" for r in new_runs), None)
    exception = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exception = f"{type(result.exception).__name__}: {result.exception}"
    return Outcome(
        case=case,
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        exception=exception,
        changed=changed,
        run_folders=new_runs,
        plan=json.loads(plan_file.read_text()) if plan_file and plan_file.is_file() else None,
    )
