"""A script's text, its syntax tree, and splices at exact tree positions: the ground the structured edits stand on.

Edits find their place through Python's `ast` (line and column of every node) and splice new text in at those
positions, so everything else in the file keeps its formatting and comments byte for byte. A regex on the text
would also match inside comments and strings, and could not tell one `self.head(` from another.
"""

from __future__ import annotations

import ast
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from experiments.script import ENTRY_POINT, Block, ScriptContractError, find_block


class EditError(ValueError):
    """A structured edit cannot be made on this script; the message says why and what the script offers."""


@dataclass(frozen=True)
class Splice:
    """Replace text[start:end] with `text` (start == end inserts)."""

    start: int
    end: int
    text: str


def literal(value: Any) -> str:
    """Python source for a hyperparameter value: `repr` round-trips floats exactly, so what was measured is kept;
    strings in double quotes, as most scripts (and ruff) write them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise EditError(f"{value!r} cannot be written as a hyperparameter default")
    if not isinstance(value, bool | int | float | str):
        raise EditError(f"{value!r} is not a number, string or boolean")
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


class Source:
    """One version of a script: text, tree, and character offsets for the tree's (line, UTF-8 column) positions."""

    def __init__(self, text: str, where: str = "script"):
        self.text = text
        self.where = where
        try:
            self.tree = ast.parse(text)
        except SyntaxError as exc:
            raise EditError(f"{where} does not parse: {exc.msg} (line {exc.lineno})") from exc
        self.lines = io.StringIO(text, newline="\n").readlines()
        self._starts = [0]
        for line in self.lines:
            self._starts.append(self._starts[-1] + len(line))

    def offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1] if lineno <= len(self.lines) else ""
        return self._starts[lineno - 1] + len(line.encode()[:col].decode(errors="ignore"))

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node) : self.end(node)]

    def line_start(self, lineno: int) -> int:
        return self._starts[lineno - 1]

    def after_line(self, lineno: int) -> tuple[int, str]:
        """Where a new line goes after `lineno`, and the newline it needs first when the file ends without one."""
        pos = self._starts[lineno]
        return pos, "" if self.text[:pos].endswith("\n") else "\n"

    def indent(self, node: ast.AST) -> str:
        line = self.lines[node.lineno - 1]  # type: ignore[attr-defined]
        return line[: len(line) - len(line.lstrip())]

    def splice(self, splices: Iterable[Splice]) -> str:
        """Apply splices computed on this version; insertions at one offset keep the order they were given in."""
        ordered = sorted(splices, key=lambda s: (s.start, s.end))
        out, pos = [], 0
        for s in ordered:
            if s.start < pos:
                raise EditError(f"{self.where}: two edits overlap at offset {s.start}")
            out += [self.text[pos : s.start], s.text]
            pos = s.end
        out.append(self.text[pos:])
        return "".join(out)

    # --- finding things -------------------------------------------------------------------------------------

    def block(self) -> Block:
        try:
            return find_block(self.text, self.where)
        except ScriptContractError as exc:
            raise EditError(str(exc)) from exc

    def block_assign(self, name: str) -> ast.Assign | None:
        block = self.block()
        for node in self.tree.body:
            if (
                block.start < node.lineno < block.end
                and isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == name
            ):
                return node
        return None

    def top_level(self, name: str) -> ast.FunctionDef | ast.ClassDef | None:
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
                return node
        return None

    def entry_point(self) -> ast.FunctionDef:
        node = self.top_level(ENTRY_POINT)
        if not isinstance(node, ast.FunctionDef):
            raise EditError(f"{self.where}: defines no top-level function {ENTRY_POINT}()")
        return node

    def hparams_var(self) -> str:
        """The dict in run() that merges the block's defaults with the trial's `hparams` (`hp` by convention)."""
        run = self.entry_point()
        positional = run.args.posonlyargs + run.args.args
        arg = positional[0].arg if positional else "hparams"
        for node in ast.walk(run):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and any(isinstance(n, ast.Name) and n.id == arg for n in ast.walk(node.value))
            ):
                return node.targets[0].id
        raise EditError(
            f"{self.where}: run() must merge its hyperparameters into one dict, "
            f"e.g. `hp = {{**HYPERPARAMETERS, **({arg} or {{}})}}`, for this edit to pass a new one in"
        )

    def enclosing(self, node: ast.AST) -> ast.stmt | None:
        """The top-level statement that contains `node`."""
        for stmt in self.tree.body:
            if stmt.lineno <= node.lineno <= stmt.end_lineno:  # type: ignore[attr-defined,operator]
                return stmt
        return None

    def module_name_for(self, module: str) -> str | None:
        """How the script spells `module` (e.g. 'torch.nn' as `nn` after `from torch import nn`)."""
        parent, _, leaf = module.rpartition(".")
        for node in self.tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == module:
                        return alias.asname or module
            if isinstance(node, ast.ImportFrom) and node.module == parent and parent:
                for alias in node.names:
                    if alias.name == leaf:
                        return alias.asname or leaf
        return None


def calls_to(tree: ast.AST, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            yield node


def self_calls(tree: ast.AST, attr: str) -> Iterator[ast.Call]:
    """Calls `self.<attr>(...)` under `tree`."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == attr
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
        ):
            yield node


def method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None
