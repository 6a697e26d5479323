"""Wall time of the README's main command, `make demo`, from start to finish on the offline defaults.

The command is whatever the Makefile's `demo` target runs, as make itself expands it (`make -n`), with this
interpreter's bin folder for $(BIN); it runs in a fresh temporary folder, so its run folder and storage start
empty, and nothing outside that folder is written.

    python bench/demo_time.py           # one run of the demo (target: under 120 s on 2 cores)
    python bench/demo_time.py --smoke   # the same command with --help appended: checks the plumbing only
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

TARGET_S = 120


def demo_commands(bin_dir: Path) -> list[str]:
    """The demo target's recipe lines, expanded by make, without rebuilding the environment first."""
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-n", "-o", "setup", "demo", f"BIN={bin_dir}"],
        cwd=common.REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise SystemExit("the Makefile's demo target runs no command")
    return lines


def run(commands: list[str], folder: Path) -> tuple[float, int, str]:
    """Run the recipe in `folder`; return wall seconds, exit status and the output's last lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_LOOP_")}
    started = time.monotonic()
    proc = subprocess.run(
        " && ".join(commands), shell=True, cwd=folder, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
    return wall, proc.returncode, tail


def produced(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.stat().st_size)


def main() -> None:
    args = common.parser(__doc__).parse_args()
    commands = demo_commands(Path(sys.executable).parent)
    if args.smoke:
        commands = [f"{c} --help" for c in commands]
    print("running: " + " && ".join(commands), flush=True)
    with tempfile.TemporaryDirectory(prefix="rl-demo-") as tmp:
        wall, code, tail = run(commands, Path(tmp))
        files = produced(Path(tmp))
    verdict = "met" if code == 0 and wall < TARGET_S else "NOT met"
    text = common.header("Demo wall time", common.command_line())
    text += "\nThe Makefile's demo target, as make expands it, run in an empty temporary folder:\n\n"
    text += "".join(f"    {c}\n" for c in commands)
    text += "\n" + common.table(
        ["wall s", "exit status", f"target < {TARGET_S} s"], [[f"{wall:.1f}", code, f"**{verdict}**"]]
    )
    text += f"\n{len(files)} files written, for example:\n\n"
    text += "".join(f"- {f}\n" for f in files[:12])
    text += "\nLast lines of its output:\n\n```\n" + tail + "\n```\n"
    path = common.write(args.out, "demo_time.md", text)
    print(text)
    print(f"wrote {path}")
    if code != 0:
        sys.exit(code)


if __name__ == "__main__":
    main()
