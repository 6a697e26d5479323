"""Run a (patched) training script once on tiny settings, in its own process: the last check before trials run.

    python -m experiments.preflight SCRIPT OUT.json --data-fraction 0.1 --hparams '{"epochs": 1}' --device cpu

Writes the metrics run() returned to OUT.json. Any failure is an exception on stderr and a non-zero exit; the
caller kills the process when it runs past its time limit. The script is imported the way a worker imports it,
so a script that passes here imports in the trials too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.script import find_block, load_module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.preflight")
    parser.add_argument("script", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-fraction", type=float, default=0.1)
    parser.add_argument("--hparams", default="{}", help="JSON object of hyperparameters over the defaults")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    defaults = find_block(args.script.read_text(), str(args.script)).defaults
    module = load_module(args.script)
    # the full set, as a worker passes it: a script may read every hyperparameter from `hparams`
    hparams = {**defaults, **json.loads(args.hparams)}
    metrics = module.run(hparams, seed=0, data_fraction=args.data_fraction, device=args.device)
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
