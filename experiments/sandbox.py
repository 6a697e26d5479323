"""The box every process that runs task code runs in: an allow-listed environment, resource limits, and, where
the machine has bubblewrap, a read-only system with no network.

Task code is not ours: a script the model edited, or the user's own, may read the environment, write anywhere
the user can, and reach the storage server. So the processes that hold the storage connection and the API keys
(the coordinator, a worker, the preflight's caller) never run it themselves; they start it through a `Box`:

- the environment is built from an allow-list (PATH, locale, the CUDA and thread settings, the contract's
  RESEARCH_LOOP_SEED / _SPLIT / _METRICS, the model caches), HOME is a scratch folder, and no name that looks
  like a credential passes, whatever it is;
- limits are set in the child before any task code runs: address space (`memory_limit_mb`, beyond what the
  Python runtime holds; not on CUDA, whose driver reserves far more address space than it uses), CPU time,
  open files, no core dumps, so that an exhausted limit fails that trial and the study goes on;
- under bubblewrap (`--sandbox auto` when it works here, `require` to refuse running without it) the system is
  read-only, the workspace and the scratch folder (and the model caches, which `datasets` locks even to read)
  are writable, /tmp and /run are private (no sockets of other services), and there is no network.
  `--sandbox off` is the explicit opt-out: no bubblewrap, the environment as is less research-loop's own
  settings, limits still set.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from experiments import channels

Mode = Literal["auto", "require", "off"]
INSTALL_HINT = "apt-get install bubblewrap"
MIN_MEMORY_MB = 1024
MEMORY_SHARE = 0.8
RUNTIME_MB = 1024  # what a plain script's interpreter with torch imported reserves before its own work
OPEN_FILES = 65536  # a limit still, above the 1024 that data loaders sharing tensors by fd outgrow
CPU_GRACE_S = 60
PROBE_TIMEOUT_S = 10
PR_SET_PDEATHSIG = 1
SCRATCH_PREFIX = "research-loop-box-"
# The system read-only; /dev, /proc, /tmp and /run the box's own (no other service's sockets in them)
SYSTEM_MOUNTS = (
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    "--tmpfs",
    "/run",
)

HIDDEN = (Path("/tmp"), Path("/run"))  # what SYSTEM_MOUNTS replaces with the box's own

# The contract's variables: what a script may read (experiments.channels); never a setting of research-loop's.
CONTRACT_ENV = (channels.SEED_ENV, channels.SPLIT_ENV, channels.METRICS_ENV)
ALLOWED_ENV = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "PYTHONHASHSEED",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
        "VIRTUAL_ENV",
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        *CONTRACT_ENV,
    }
)
ALLOWED_PREFIXES = ("LC_", "PYTORCH_")
# Where downloaded data sets and models live; kept where they were, since HOME moves to the scratch folder.
CACHE_ENV = {"HF_HOME": ".cache/huggingface", "TORCH_HOME": ".cache/torch"}
CACHE_OVERRIDES = ("HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE")
CREDENTIAL = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|URL", re.IGNORECASE)
# research-loop's own settings (its storage URL, its API key): never passed on, not even under `--sandbox off`
OWN_PREFIX = "RESEARCH_LOOP_"

# Runs as the box's first process: sets the limits, then becomes the command. Only the standard library, so it
# costs an interpreter start and nothing more.
LIMITS_STUB = """import json, os, resource, sys
for name, value in json.loads(sys.argv[1]).items():
    kind = getattr(resource, name)
    hard = resource.getrlimit(kind)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))
os.execv(sys.argv[2], sys.argv[2:])
"""


class TrialTimeout(BaseException):
    """A BaseException, so that a script's own `except Exception` cannot swallow the time limit."""


class SandboxUnavailable(RuntimeError):
    """`--sandbox require` on a machine where bubblewrap does not run."""


class BoxSpec(BaseModel):
    """How a study's trials are boxed: from its StudySpec, the same for every worker."""

    mode: Mode = "auto"
    memory_limit_mb: int | None = Field(default=None, description="None: a share of the machine's memory")


class Isolation(BaseModel):
    """What a run's task code got, as recorded in run.json and the report."""

    mode: Mode = "auto"
    kind: Literal["bubblewrap", "none", "off"]
    memory_limit_mb: int | None = Field(default=None, description="None: not enforced (CUDA)")
    reason: str = Field(default="", description="why bubblewrap was not used")

    def describe(self) -> str:
        memory = f"{self.memory_limit_mb} MB" if self.memory_limit_mb else "memory limit not enforced on CUDA"
        if self.kind == "bubblewrap":
            return f"bubblewrap, no network, {memory}"
        if self.kind == "none":
            return f"none available: environment scrubbed, limits set, {memory}"
        return "off (--sandbox off): no isolation"


def allowed(name: str) -> bool:
    """Whether a variable passes into the box: on the allow-list, and not named like a credential."""
    if CREDENTIAL.search(name):
        return False
    return (
        name in ALLOWED_ENV
        or name.startswith(ALLOWED_PREFIXES)
        or name in CACHE_ENV
        or name in CACHE_OVERRIDES
    )


def scrubbed_env(environ: Mapping[str, str], home: Path | str) -> dict[str, str]:
    """The allow-listed part of `environ`, HOME set to `home`, the model caches kept where they were."""
    env = {k: v for k, v in environ.items() if allowed(k)}
    env |= {k: str(p) for k, p in _caches(environ).items() if k not in env}
    env["HOME"] = str(home)
    return env


def _caches(environ: Mapping[str, str]) -> dict[str, Path]:
    """The cache folders that exist, by variable: set ones, else their defaults under the real HOME."""
    home = Path(environ.get("HOME") or Path.home())
    found = {k: Path(environ.get(k) or home / default) for k, default in CACHE_ENV.items()}
    found |= {k: Path(environ[k]) for k in CACHE_OVERRIDES if environ.get(k)}
    return {k: p for k, p in found.items() if p.is_dir()}


def unscrubbed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`--sandbox off`: the environment as is, less research-loop's own settings (a storage URL, an API key)."""
    return {k: v for k, v in environ.items() if not k.startswith(OWN_PREFIX) or k in CONTRACT_ENV}


def default_memory_mb(workers: int = 1) -> int:
    """A share of the machine's memory for each of `workers` boxed processes, at least MIN_MEMORY_MB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(MIN_MEMORY_MB, int(total * MEMORY_SHARE / max(1, workers)) >> 20)


def runtime_paths() -> list[Path]:
    """Where the boxed process's Python, its packages and research-loop's own code live, when the box's
    private /tmp or /run would hide them (a clone and its virtual environment under /tmp): shown again
    read-only, or nothing imports in the box."""
    found = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *sys.path) if p}
    found.add(Path(__file__).resolve().parents[1])  # the folder holding this package (an editable install's)
    return sorted(p for p in found if p.exists() and any(p.is_relative_to(h) for h in HIDDEN))


def bwrap_prefix(bwrap: str, writable: Sequence[Path], cwd: Path, readable: Sequence[Path] = ()) -> list[str]:
    """The bubblewrap command line that runs what follows it: system read-only, `writable` bound read-write,
    private /tmp, /run and /dev (GPUs passed through; `readable`, files the command names, shown again where
    they were hidden), no network, its own pid namespace, killed with its parent."""
    args = [bwrap, *SYSTEM_MOUNTS]
    for device in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind", str(device), str(device)]
    for path in dict.fromkeys(str(Path(p).resolve()) for p in readable):
        args += ["--ro-bind", path, path]
    for folder in dict.fromkeys(str(Path(p).resolve()) for p in writable):
        args += ["--bind", folder, folder]
    args += ["--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session"]
    return [*args, "--chdir", str(cwd.resolve()), "--"]


@functools.cache
def _probe(bwrap: str) -> str:
    """Why bubblewrap cannot run here ("" when it can): the box's own options, once per process."""
    true = shutil.which("true") or "/bin/true"
    cmd = [*bwrap_prefix(bwrap, [], Path("/")), true]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not run: {exc}"
    lines = done.stderr.strip().splitlines()
    return (
        "" if done.returncode == 0 else f"bwrap failed: {lines[-1] if lines else f'exit {done.returncode}'}"
    )


def find_bwrap(environ: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The bubblewrap that works here, or None and why not."""
    environ = os.environ if environ is None else environ
    path = shutil.which("bwrap", path=environ.get("PATH", os.defpath))
    if path is None:
        return None, "bwrap is not installed"
    why = _probe(path)
    return (None, why) if why else (path, "")


def isolation(
    spec: BoxSpec, workers: int = 1, cuda: bool = False, environ: Mapping[str, str] | None = None
) -> Isolation:
    """What a run with `spec` gets on this machine; raises SandboxUnavailable for `require` without bubblewrap."""
    memory = None if cuda else spec.memory_limit_mb or default_memory_mb(workers)
    if spec.mode == "off":
        return Isolation(mode="off", kind="off", memory_limit_mb=memory, reason="--sandbox off")
    bwrap, why = find_bwrap(environ)
    if bwrap is None and spec.mode == "require":
        raise SandboxUnavailable(
            f"--sandbox require, but {why}; install it ({INSTALL_HINT}) or use --sandbox auto"
        )
    kind = "bubblewrap" if bwrap else "none"
    return Isolation(mode=spec.mode, kind=kind, memory_limit_mb=memory, reason=why)


class Box:
    """Starts task code boxed: one scratch folder (its HOME and TMPDIR) for the box's life, removed by `close`."""

    def __init__(
        self,
        spec: BoxSpec,
        workspace: Path,
        workers: int = 1,
        timeout_s: float = 600,
        environ: Mapping[str, str] | None = None,
    ):
        self.environ = dict(os.environ if environ is None else environ)
        self.spec, self.workspace = spec, workspace.resolve()
        self.memory_limit_mb = spec.memory_limit_mb or default_memory_mb(workers)
        self.cpu_s = int(timeout_s * (os.cpu_count() or 1) + CPU_GRACE_S)
        self.isolation = isolation(spec, workers, environ=self.environ)
        self.bwrap = find_bwrap(self.environ)[0] if self.isolation.kind == "bubblewrap" else None
        _sweep()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))

    def describe(self, cuda: bool = False) -> str:
        memory = None if cuda else self.memory_limit_mb
        return self.isolation.model_copy(update={"memory_limit_mb": memory}).describe()

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The box's environment, with `extra` (the contract's variables, the thread counts) over it."""
        if self.isolation.kind == "off":
            env = unscrubbed_env(self.environ)
        else:
            env = scrubbed_env(self.environ, self.scratch)
        return {**env, "TMPDIR": str(self.scratch), **(extra or {})}

    def command(
        self,
        argv: Sequence[str],
        cwd: Path,
        writable: Sequence[Path] = (),
        memory_mb: int | None = None,
        cpu_s: int | None = None,
        readable: Sequence[Path] = (),
    ) -> list[str]:
        """`argv` run in the box with `cwd` as its folder: bubblewrap (when it is used), then the limits stub.
        `memory_mb` / `cpu_s` are absolute limits for a process that runs task code from its start; a process
        that sets its own (experiments.boxed) passes neither."""
        limits = {"RLIMIT_NOFILE": OPEN_FILES, "RLIMIT_CORE": 0}
        if memory_mb:
            limits["RLIMIT_AS"] = memory_mb << 20
        if cpu_s:
            limits["RLIMIT_CPU"] = cpu_s
        stub = [sys.executable, "-I", "-c", LIMITS_STUB, json.dumps(limits), *argv]
        if self.bwrap is None:
            return stub
        folders = [self.workspace, self.scratch, cwd, *writable, *_caches(self.environ).values()]
        return [*bwrap_prefix(self.bwrap, folders, cwd, [*runtime_paths(), *readable]), *stub]

    def program_memory_mb(self, device: str) -> int | None:
        """The address-space limit of a plain script's process (the runtime's share, then the trial's); none
        where it may use CUDA."""
        return None if may_use_cuda(device, self.environ) else self.memory_limit_mb + RUNTIME_MB

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise TrialTimeout(f"trial timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def die_with_parent() -> None:
    """Linux: be killed when the parent dies, so a killed worker leaves no orphan training trials."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _sweep() -> None:
    """Remove the scratch folders of boxes whose process is gone: a worker killed at a study's end (as the
    coordinator kills those still running) never removes its own."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).partition("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def may_use_cuda(device: str, environ: Mapping[str, str]) -> bool:
    """Whether a process given `device` may use a GPU, told without importing torch: a plain script's."""
    if device != "auto":
        return device.startswith("cuda")
    return environ.get("CUDA_VISIBLE_DEVICES") != "" and any(Path("/dev").glob("nvidia[0-9]*"))


def describe_exit(returncode: int, boxed: bool) -> str:
    """A dead box's exit status in words: bubblewrap reports a signal as 128 + its number."""
    code = -(returncode - 128) if boxed and returncode > 128 else returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"
