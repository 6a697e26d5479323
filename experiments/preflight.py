"""Run a (patched) training script once on tiny settings, in its own process: the last check before trials run.

    python -m experiments.preflight SCRIPT OUT.json --hparams '{"epochs": 1}' --device cpu --metric accuracy

Writes the metrics run() returned to OUT.json. Any failure is an exception on stderr and a non-zero exit; a
plain script's failure (experiments.program) also writes `{"error": message}` to OUT.json, since its message
quotes the script's last output lines. The caller kills the process group when it runs past its time limit.
The script is loaded the way a worker loads it, so a script that passes here runs in the trials too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments import entry
from experiments.program import ProgramError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.preflight")
    parser.add_argument("script", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-fraction", type=float, default=0.1)
    parser.add_argument("--hparams", default="{}", help="JSON object of hyperparameters over the defaults")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--metric", default="accuracy", help="what a plain script's output is searched for")
    args = parser.parse_args(argv)
    defaults, module = entry.load(args.script, args.metric)
    # the full set, as a worker passes it: a script may read every hyperparameter from `hparams`
    hparams = {**defaults, **json.loads(args.hparams)}
    try:
        metrics = module.run(hparams, seed=0, data_fraction=args.data_fraction, device=args.device)
    except ProgramError as exc:
        args.out.write_text(json.dumps({"error": str(exc)}))
        raise
    if not isinstance(metrics, dict) or not metrics:
        raise TypeError(f"run() returned {type(metrics).__name__}, not a dict of metrics")
    values = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"run() returned metric {name!r} = {value!r}, not a number")
        values[str(name)] = float(value)
    args.out.write_text(json.dumps(values))


if __name__ == "__main__":
    main()
