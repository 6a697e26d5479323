"""A plain training script's hyperparameters, found on its syntax tree, and values written where they live.

A script that follows no contract still says what its hyperparameters are: argparse flags with defaults, click
and typer options, the fields of the dataclasses an `HfArgumentParser` parses, literal keyword arguments of
calls whose meaning is well known (`TrainingArguments`, torch optimizers, `nn.Dropout`, `DataLoader`,
scikit-learn estimators) and module-level numeric constants. They are read from the tree, never by importing
the script, so finding them runs none of its code. What is found is typed in `hyperparameters`; the flags are
read in `flags`, the keyword literals and constants in `literals`.

A trial sets a hyperparameter by its command-line flag where it has one (the file stays as it is), and
otherwise by rewriting its literal in a copy of the script. `write_values` makes that copy, and approve writes
the measured values back through it as the script's own defaults: an argparse `default=`, a keyword literal, a
constant.
Literal seeds (`torch.manual_seed(0)`, `TrainingArguments(seed=42)`, an estimator's `random_state=0`) are
rewritten to each run's seed the same way, so that seeds differ between runs of a script that fixes its own.
"""

from __future__ import annotations

import ast
import io
import json
import math
from typing import Any

from experiments.flags import _argparse, _click, _dataclasses, _typer
from experiments.hyperparameters import SEED_NAMES, Discovery, Value, _Scan, _Site
from experiments.literals import _constants, _keywords
from experiments.script_facts import family, imported, reported


class DiscoveryError(ValueError):
    """A value that cannot be written where the script keeps it; the message names it."""


def discover(source: str, where: str = "script") -> Discovery:
    """The script's hyperparameters in the order a person reads them: flags, then keyword literals, then
    constants. Raises SyntaxError when the script does not parse."""
    scan = _scan(source, where)
    return Discovery(
        hyperparameters=[s.param for s in scan.sites],
        seed_flag=scan.seed_flag,
        seed_sites=len(scan.seeds),
        family=family(scan.tree),
        reported=reported(scan.tree),
    )


def write_values(source: str, values: dict[str, Any], seed: int | None = None, where: str = "script") -> str:
    """The script with `values` as the defaults of the named hyperparameters (and every literal seed set to
    `seed`); everything else in the file is kept byte for byte."""
    scan = _scan(source, where)
    sites = {s.param.name: s for s in scan.sites}
    splices: list[tuple[int, int, str]] = []
    text = _Text(source)
    later: dict[int, tuple[ast.stmt, str, list[str]]] = {}
    for name, value in values.items():
        if name not in sites:
            raise DiscoveryError(
                f"{where}: has no hyperparameter {name!r} (it has {', '.join(sites) or 'none'})"
            )
        site = sites[name]
        for node in site.nodes:
            if node is not None:
                splices.append((text.start(node), text.end(node), _literal(value, name)))
            elif site.call is not None:  # a store_true flag without `default=` gets one
                end = text.end(site.call) - 1
                splices.append((end, end, f", default={_literal(value, name)}"))
            elif site.after is not None:  # a TrainingArguments field: the parser's own default for it
                stmt, parser = site.after
                later.setdefault(id(stmt), (stmt, parser, []))[2].append(f"{name}={_literal(value, name)}")
            else:
                raise DiscoveryError(
                    f"{where}: {name} is a TrainingArguments field and the HfArgumentParser has no name to "
                    f"give it a default (parser = HfArgumentParser(...)); pass it as --{name} instead"
                )
    for stmt, parser, given in later.values():
        end = text.end(stmt)
        splices.append((end, end, f"\n{' ' * stmt.col_offset}{parser}.set_defaults({', '.join(given)})"))
    if seed is not None:
        splices += [(text.start(n), text.end(n), str(int(seed))) for n in scan.seeds]
    return text.splice(splices)


# --- scanning -----------------------------------------------------------------------------------------------


def _scan(source: str, where: str) -> _Scan:
    """Every site in reading order, each under a name of its own; the seed flag and literal seeds with them.
    A seed-named option is the seed flag, never a hyperparameter: a study must not tune its seeds."""
    tree = ast.parse(source, filename=where)
    scan = _Scan(tree)
    packages = imported(tree)
    flags: list[_Site] = [*_argparse(tree, scan)]
    if "click" in packages:
        flags += _click(tree)
    if "typer" in packages:
        flags += _typer(tree)
    flags += _dataclasses(tree)
    taken: set[str] = set()
    for site in flags:
        if site.param.name in SEED_NAMES:
            scan.seed_flag = scan.seed_flag or site.param.flag
            continue
        scan.sites.append(_named(site, taken))
    grouped: dict[tuple[str, str, Value], _Site] = {}
    for site in _keywords(tree, scan):
        key = (site.param.owner or "", site.param.name, site.param.default)
        if key in grouped:  # the same call with the same literal in several places: one hyperparameter
            grouped[key].nodes += site.nodes
        else:
            grouped[key] = _named(site, taken)
            scan.sites.append(grouped[key])
    scan.sites += [_named(site, taken) for site in _constants(tree)]
    return scan


def _named(site: _Site, taken: set[str]) -> _Site:
    """The site under a name no earlier one has: `dropout`, then `dropout_2`, ..."""
    name, n = site.param.name, 1
    while name in taken:
        n += 1
        name = f"{site.param.name}_{n}"
    taken.add(name)
    return (
        site
        if name == site.param.name
        else _Site(site.param.model_copy(update={"name": name}), site.nodes, site.call, site.after)
    )


# --- writing ------------------------------------------------------------------------------------------------


def _literal(value: Any, name: str) -> str:
    """Python source for a value: `repr` round-trips floats exactly; strings in double quotes."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DiscoveryError(f"{name}: {value!r} cannot be written as a default")
    if not isinstance(value, bool | int | float | str):
        raise DiscoveryError(f"{name}: {value!r} is not a number, string or boolean")
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


class _Text:
    """Character offsets for the tree's (line, UTF-8 byte column) positions, and splices at them."""

    def __init__(self, text: str):
        self.text = text
        self.lines = io.StringIO(text, newline="\n").readlines()
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def _offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1] if lineno <= len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="ignore"))

    def start(self, node: ast.AST) -> int:
        return self._offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self._offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def splice(self, splices: list[tuple[int, int, str]]) -> str:
        out, pos = [], 0
        for start, end, new in sorted(splices):
            if start < pos:
                raise DiscoveryError(f"two values would be written at offset {start}")
            out += [self.text[pos:start], new]
            pos = end
        return "".join([*out, self.text[pos:]])
