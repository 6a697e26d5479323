"""How a plain script's metrics come back: three channels, read in this order.

1. A JSON file at the path in `$RESEARCH_LOOP_METRICS`. `experiments.report_metrics(accuracy=0.93)` writes one
   JSON object per call; `step=` marks a per-epoch value, which feeds the pruner. A script may write the file
   itself, as one JSON object or one per line.
2. The Hugging Face Trainer's `all_results.json` / `eval_results.json` (and `test_results.json`), which
   `trainer.save_metrics` writes in its output_dir.
3. Standard output: the last line that holds the metric as `name=value`, `name: value`, `name 0.93` (a value
   with a decimal point, so that counters such as `line 11` are not read as metrics), or a printed dict (the
   Trainer prints one per evaluation, which is how `trainer.evaluate()` reaches this channel). Names of several
   words are joined (`| valid loss 6.69 | valid ppl 804.2` gives `valid_loss`, `valid_ppl`, which studies name
   `loss` and `perplexity`), keeping a split's word before the last one (`train loss`, `val loss`) and dropping
   other leading words (`Final accuracy` is `accuracy`). `--metric-regex` reads a line of any other form. Lines that also name an epoch (`epoch 3: accuracy=0.91`, `step 60: train loss 4.5, val loss
   4.6`, the Trainer's `'epoch': 3.0`) are the per-epoch values.

Scripts that call `report_metrics` import this module, so it imports only the standard library, pydantic and
experiments.script_facts (which names metrics the way studies do); never torch.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from experiments.script_facts import METRIC_PREFIXES, metric_name

METRICS_ENV = "RESEARCH_LOOP_METRICS"
SEED_ENV = "RESEARCH_LOOP_SEED"
SPLIT_ENV = "RESEARCH_LOOP_SPLIT"
METRICS_FILE = "metrics.jsonl"
TRAINER_FILES = ("all_results.json", "eval_results.json", "test_results.json")
# What a Trainer log or a progress line holds besides metrics: timings, counters, the current learning rate.
_BOOKKEEPING = re.compile(
    r"runtime|per_second|flos|memory|grad_norm|(^|_)(epochs?|steps?|global_step|iter|iteration|time)$|"
    r"^(lr|learning_rate)$"
)
# a value is a number, or NaN / infinity as Python and NumPy print them, so that a diverged run is told its
# metric was NaN rather than that it reported none; after a bare space, only a number with a decimal point
_NAN = r"[-+]?(?:nan|inf(?:inity)?)"
_NUMBER = rf"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|{_NAN}"
_DECIMAL = rf"-?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+|{_NAN}"
# a name is up to three words; words that join a sentence ("accuracy of 0.9", "is") are not part of one
_STOP = r"(?:is|was|of|the|a|an|at|after|in|on|for|to|and|with|by|from|per|over)\b"
_WORD = rf"(?!{_STOP})[A-Za-z_](?:[\w./-]*\w)?"
_PAIR = re.compile(
    rf"(?<![\w./-])({_WORD}(?:[ \t]+{_WORD}){{0,2}})(?:[ \t]*[=:][ \t]*({_NUMBER})|[ \t]+({_DECIMAL}))(?![\w.])",
    re.IGNORECASE,
)
# the words that tell one split's value from another's, kept before the metric's own word
_SPLITS = {"train", "training", "val", "valid", "validation", "eval", "dev", "test"}
_EPOCH = re.compile(r"\b(?:epoch|step)\b\s*[=:#]?\s*(\d+)", re.IGNORECASE)
_DICT = re.compile(r"\{[^{}]*\}")

Record = tuple[int | None, dict[str, float]]


def report_metrics(step: int | None = None, **metrics: float) -> None:
    """Hand metrics to research-loop (`step=` for a per-epoch value); a no-op outside a research-loop run."""
    path = os.environ.get(METRICS_ENV)
    if not path:
        return
    record = {
        **({"step": int(step)} if step is not None else {}),
        **{k: float(v) for k, v in metrics.items()},
    }
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")


class Point(BaseModel):
    """One per-epoch report: the epoch (or step) and the metrics it gave."""

    step: int
    metrics: dict[str, float]


class Reading(BaseModel):
    """What one run reported through the first channel that held its metric."""

    channel: str
    metrics: dict[str, float]
    points: list[Point] = []


def canonical(raw: dict[str, Any]) -> dict[str, float]:
    """Metric name -> number, named as studies name them (`eval_accuracy` -> `accuracy`), timings dropped."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        name = metric_name(str(key).replace("/", "_").lower())
        if _BOOKKEEPING.search(name) or isinstance(value, bool):
            continue
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def metric_pattern(text: str) -> re.Pattern[str]:
    """`--metric-regex`: a regular expression whose first group is the metric's value on a line of output;
    refused in one line when it does not compile or has no group."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ValueError(f"--metric-regex {text!r}: {exc}") from None
    if not pattern.groups:
        raise ValueError(f"--metric-regex {text!r}: put the value in a group, e.g. 'perplexity ([0-9.]+)'")
    return pattern


def read(folder: Path, stdout: str, metric: str, pattern: re.Pattern[str] | None = None) -> Reading | None:
    """The run's metrics from the first channel that holds `metric`, with that channel's per-epoch points;
    None when no channel does. `folder` is the run's own working directory, fresh for each run. With a
    `pattern` (--metric-regex), standard output gives `metric` only where the pattern finds it."""
    for channel, records in (
        ("report_metrics", _file_records(folder / METRICS_FILE)),
        ("trainer", _trainer_records(folder)),
        ("stdout", _stdout_records(stdout, metric, pattern)),
    ):
        final = _final(records, metric)
        if final is not None:
            return Reading(channel=channel, metrics=final, points=_points(records, metric))
    return None


def points(folder: Path, stdout: str, metric: str, pattern: re.Pattern[str] | None = None) -> list[Point]:
    """The per-epoch values reported so far, from the first channel that has any: what feeds the pruner while
    the script still runs."""
    for records in (_file_records(folder / METRICS_FILE), _stdout_records(stdout, metric, pattern)):
        found = _points(records, metric)
        if found:
            return found
    return []


def found_names(folder: Path, stdout: str) -> list[str]:
    """Every metric name any channel holds with a value that is not a whole number: what a script did report,
    when not the one asked for. Counts and sizes (`batch_size=64`, `samples: 1000`) print as whole numbers
    and would bury the metrics in a list of candidates."""
    records = [
        *_file_records(folder / METRICS_FILE),
        *_trainer_records(folder),
        *_stdout_records(stdout),
    ]
    return sorted({n for _, values in records for n, v in values.items() if not float(v).is_integer()})


def _final(records: list[Record], metric: str) -> dict[str, float] | None:
    """The metrics of the last record holding `metric`, and the held-out value from the last holding its test_
    twin; None when no record holds `metric`."""
    last = next((values for _, values in reversed(records) if metric in values), None)
    if last is None:
        return None
    test = next((values for _, values in reversed(records) if f"test_{metric}" in values), {})
    return {**last, **{k: v for k, v in test.items() if k.startswith("test_")}}


def _points(records: list[Record], metric: str) -> list[Point]:
    out: list[Point] = []
    for step, values in records:
        if step is not None and metric in values and (not out or step > out[-1].step):
            out.append(Point(step=step, metrics=values))
    return out


def _file_records(path: Path) -> list[Record]:
    """One JSON object, or one per line; a line still being written is skipped."""
    try:
        text = path.read_text()
    except OSError:
        return []
    try:
        items = [json.loads(text)]
    except ValueError:
        items = []
        for line in text.splitlines():
            try:
                items.append(json.loads(line))
            except ValueError:
                continue
    return [_record(item) for item in items if isinstance(item, dict)]


def _record(raw: dict[str, Any]) -> Record:
    """A record's metrics and its whole-numbered step or epoch (the Trainer prints numbers as strings)."""
    try:
        step = float(raw.get("step", raw.get("epoch")))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        step = math.nan
    return (int(step) if step.is_integer() else None), canonical(raw)


def _trainer_records(folder: Path) -> list[Record]:
    """The Trainer's saved results anywhere under the run's folder (in its output_dir), TRAINER_FILES first."""
    records: list[Record] = []
    for name in TRAINER_FILES:
        for path in sorted(folder.rglob(name)):
            records += [(None, values) for _, values in _file_records(path)]
    return records


def _stdout_records(text: str, metric: str = "", pattern: re.Pattern[str] | None = None) -> list[Record]:
    """Each output line's metrics: a printed dict, else its `name=value` / `name: value` / `name 0.5` pairs,
    with the epoch the line names. A progress bar's carriage returns split a line like newlines do.

    Where the output names a validation value (`val loss`, the Trainer's `eval_loss`), the same name printed
    bare elsewhere is the training one (`iter 60: loss 4.4`, the Trainer's `{'loss': ...}` logs) and is
    dropped, so that it never stands in for the validation value. A `pattern` alone gives `metric`."""
    found: list[tuple[int | None, dict[str, Any]]] = []
    for line in re.split(r"[\r\n]+", text):
        dicts = [d for d in map(_dict_of, _DICT.findall(line)) if d]
        if dicts and pattern is None:
            found.append((None, dicts[-1]))
            continue
        pairs = {_joined(name): a or b for name, a, b in _PAIR.findall(line)}
        if pattern is not None:
            pairs = {k: v for k, v in pairs.items() if metric_name(_key(k)) != metric}
            match = pattern.search(line)
            if match:
                pairs[metric] = match.group(1)
        if pairs:
            epoch = _EPOCH.search(line)
            found.append((int(epoch.group(1)) if epoch else None, pairs))
    keys = [_key(k) for _, raw in found for k in raw]
    validated = {metric_name(k) for k in keys if k.startswith(METRIC_PREFIXES)}
    records: list[Record] = []
    for epoch, raw in found:
        kept = {k: v for k, v in raw.items() if not _bare(_key(k), validated)}
        step, values = _record(kept)
        if values:
            records.append((step if epoch is None else epoch, values))
    return records


def _key(name: object) -> str:
    return str(name).replace("/", "_").lower()


def _bare(key: str, validated: set[str]) -> bool:
    """A key without a split prefix whose metric the output also gives with a validation prefix."""
    return not key.startswith((*METRIC_PREFIXES, "test_")) and metric_name(key) in validated


def _joined(name: str) -> str:
    """A printed name as one key: its last word, after the split's word when one comes before it."""
    words = name.split()
    keep = words[-2:] if len(words) > 1 and words[-2].lower() in _SPLITS else words[-1:]
    return "_".join(keep)


def _dict_of(text: str) -> dict[str, Any] | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
