"""A user's script runs in a copy of its repository, as `python train.py` runs from the script's folder.

A training script is rarely alone: it imports its siblings (`from model import GPT`), execs a configurator
file, and reads prepared data by relative path (`data/shakespeare/train.bin`, `reviews.csv`). So a run's
`baseline/` and `workspace/` are copies of the script's project (its git work tree, else the script's folder),
made once per run:

- the files git tracks and the untracked ones it does not ignore are copied (they are the code, and what a
  patch and the workspace hash see), those over COPY_LIMIT bytes linked instead;
- everything else under the project (ignored data folders, checkpoints, a large CSV) is a symbolic link to the
  original, one link per entry at the shallowest level that holds no copied file, so a data folder costs one
  link whatever its size. The links' targets are listed in MANIFEST, so a trial's box can show them read-only.

Each trial then runs in a mirror of the workspace (`mirror`): real folders, a link per file, and its own copy
of the script, so that concurrent trials never share a working folder or an output file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

MANIFEST = "research-loop-project.json"
COPY_LIMIT = 1 << 20
SKIPPED = frozenset({".git", "__pycache__"})
GIT_TIMEOUT_S = 30
_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")
_MISSING_FILE = re.compile(r"(?:FileNotFoundError|OSError): \[Errno 2\] No such file or directory: '([^']+)'")


def root(script: Path) -> Path:
    """The project a script belongs to: its git work tree, else its own folder."""
    folder = script.resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return folder
    top = Path(done.stdout.strip()).resolve() if done.returncode == 0 and done.stdout.strip() else None
    return top if top is not None and folder.is_relative_to(top) else folder


def _code(project: Path, script: Path) -> set[Path]:
    """The project's code, relative: git's tracked and unignored files, else the Python files of the folder
    and of its subfolders. The script is always among them."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=project,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
        )
        listed = done.stdout.decode(errors="surrogateescape").split("\0") if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        listed = None
    if listed is None:  # the folder's modules and its packages' (one level: it may be a home folder)
        found = [*project.glob("*.py"), *project.glob("*/*.py")]
        listed = [
            str(p.relative_to(project)) for p in found if not SKIPPED & set(p.relative_to(project).parts)
        ]
    found = {Path(name) for name in listed if name}
    return {p for p in found if (project / p).is_file() and not (project / p).is_symlink()} | {
        script.resolve().relative_to(project)
    }


def copy(script: Path, target: Path, project: Path) -> Path:
    """Copy `script`'s `project` into `target`; returns where the script lies in the copy. Nothing under the
    project that holds `target` (a reports folder inside the repository) is copied or linked."""
    inside = script.resolve().relative_to(project)
    code = _code(project, script)
    folders = {parent for path in code for parent in path.parents}
    links: list[str] = []

    def walk(rel: Path) -> None:
        (target / rel).mkdir(parents=True, exist_ok=True)
        for entry in sorted((project / rel).iterdir()):
            path = rel / entry.name
            if entry.name in SKIPPED or target.resolve().is_relative_to(entry.resolve()):
                continue
            if path in folders and entry.is_dir() and not entry.is_symlink():
                walk(path)
            elif path in code and entry.stat().st_size <= COPY_LIMIT:
                shutil.copy2(entry, target / path)
            else:
                os.symlink(entry.resolve(), target / path)
                links.append(str(entry.resolve()))

    walk(Path("."))
    manifest = {"project": str(project), "script": inside.as_posix(), "links": links}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return target / inside


def workspace_of(script: Path) -> Path:
    """The copy a script lies in: the nearest folder above it that holds MANIFEST, else its own folder."""
    folder = script.resolve().parent
    return next((p for p in (folder, *folder.parents) if (p / MANIFEST).is_file()), folder)


def linked(workspace: Path) -> list[Path]:
    """The originals the copy links to: what a box shows read-only, so that a trial can read them."""
    path = workspace / MANIFEST
    if not path.is_file():
        return []
    return [Path(p) for p in json.loads(path.read_text())["links"] if Path(p).exists()]


def mirror(workspace: Path, folder: Path, skip: Path) -> None:
    """`folder` as a trial's view of `workspace`: its folders made, each file a link to the workspace's
    (a link there pointing where it points), except `skip`, which the trial writes itself."""
    for here, dirs, files in os.walk(workspace):
        rel = Path(here).relative_to(workspace)
        (folder / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs + files:
            source, path = Path(here) / name, rel / name
            if source.is_symlink():
                os.symlink(os.readlink(source), folder / path)
            elif name in files and path != skip and name != MANIFEST:
                os.symlink(source, folder / path)
        dirs[:] = [d for d in dirs if not (Path(here) / d).is_symlink()]


def explain(stderr: str, script: str) -> str:
    """One line on a module or file the script could not find in the copy of its repository, and how to make
    it available; "" when the failure is something else."""
    module = _MISSING_MODULE.search(stderr)
    if module:
        name = module.group(1)
        return (
            f"{script} imports `{name}`, which is neither installed nor in the repository: commit it or add "
            f"it next to the script (or install the package that provides it)"
        )
    missing = _MISSING_FILE.search(stderr)
    if missing:
        return (
            f"{script} reads `{missing.group(1)}`, which is not in its repository: create it there (for "
            f"prepared data, run its preparation step first) or pass its path in --command"
        )
    return ""
