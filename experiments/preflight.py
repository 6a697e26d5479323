"""Run a (patched) training script once on tiny settings, boxed: the last check before trials run.

    python -m experiments.preflight SCRIPT OUT.json --hparams '{"epochs": 1}' --device cpu --metric accuracy

Writes the metrics run() returned to OUT.json. Any failure is a non-zero exit, with `{"error": message}` in
OUT.json (a plain script's message quotes its last output lines; a contract script's names the exception).
The caller kills the process group when it runs past its time limit.

This process is started with the caller's environment (API keys among it), so it never runs the script
itself: the script runs the way a worker runs it (experiments.boxed for a contract script, a boxed subprocess
for a plain one; experiments.sandbox says what the box holds back), so a script that passes here runs in the
trials too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from experiments import entry, sandbox
from experiments.boxed import BoxError, Child
from experiments.program import ProgramError, ProgramScript, is_program
from experiments.script import ScriptContractError


def _run(args: argparse.Namespace, box: sandbox.Box) -> dict:
    """The script's metrics for one run on the full set of hyperparameters, as a worker passes them."""
    source = args.script.read_text()
    overrides = json.loads(args.hparams)
    if is_program(source):
        program = ProgramScript(args.script, args.metric, box=box)
        hparams = {**program.defaults, **overrides}
        return program.run(hparams, seed=0, data_fraction=args.data_fraction, device=args.device)
    hparams = {**entry.defaults(source, args.script.name), **overrides}
    call = {"hparams": hparams, "seed": 0, "data_fraction": args.data_fraction, "holdout": False}
    child = Child(box, args.script, args.metric, args.device, len(os.sched_getaffinity(0)))
    try:
        result = child.run(None, {**call, "device": args.device}, args.timeout_s)
    finally:
        child.close()
    if result.error is not None:
        raise ProgramError(f"run() failed: {result.error}")
    return result.metrics or {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.preflight")
    parser.add_argument("script", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-fraction", type=float, default=0.1)
    parser.add_argument("--hparams", default="{}", help="JSON object of hyperparameters over the defaults")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--metric", default="accuracy", help="what a plain script's output is searched for")
    parser.add_argument("--sandbox", choices=["auto", "require", "off"], default="auto")
    parser.add_argument("--memory-limit-mb", type=int, default=None, help="default: a share of the memory")
    parser.add_argument("--timeout-s", type=float, default=600, help="the script's time limit")
    args = parser.parse_args(argv)
    spec = sandbox.BoxSpec(mode=args.sandbox, memory_limit_mb=args.memory_limit_mb)
    try:
        box = sandbox.Box(spec, args.script.parent, timeout_s=args.timeout_s)
        try:
            metrics = _run(args, box)
        finally:
            box.close()
    except (ProgramError, BoxError, ScriptContractError, sandbox.SandboxUnavailable) as exc:
        args.out.write_text(json.dumps({"error": str(exc)}))
        print(exc, file=sys.stderr)
        sys.exit(1)
    values = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"run() returned metric {name!r} = {value!r}, not a number")
        values[str(name)] = float(value)
    if not values:
        raise TypeError("run() returned no metrics")
    args.out.write_text(json.dumps(values))


if __name__ == "__main__":
    main()
