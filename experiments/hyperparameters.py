"""What discovery finds in a plain script: each hyperparameter with where it lives, and the whole script's
offer (its hyperparameters, how it takes a seed, what it reports).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

Value = bool | int | float | str
Kind = Literal["argparse", "click", "typer", "dataclass", "keyword", "constant"]
FLAG_KINDS: tuple[Kind, ...] = ("argparse", "click", "typer", "dataclass")
SEED_NAMES = frozenset({"seed", "random_seed", "random_state", "rng_seed"})


class Hyperparameter(BaseModel):
    """One hyperparameter of a plain script: the name the plan searches it by, its default, where it lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    default: Value
    kind: Kind
    line: int
    flag: str | None = None
    negative: str | None = None
    toggle: bool = False
    choices: list[Value] | None = None
    owner: str | None = None
    keyword: str | None = None

    @property
    def where(self) -> str:
        """Where the value lives, for a person reading the list (`--lr (argparse, line 12)`)."""
        if self.kind == "dataclass":
            return f"{self.flag} (HfArgumentParser field {self.owner}.{self.keyword}, line {self.line})"
        if self.kind in FLAG_KINDS:
            return f"{self.flag} ({self.kind}, line {self.line})"
        if self.kind == "constant":
            return f"constant {self.owner} (line {self.line})"
        return f"{self.owner}({self.keyword}=...) (line {self.line})"


class Discovery(BaseModel):
    """What a plain script offers: its hyperparameters, how it takes a seed, and what it reports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hyperparameters: list[Hyperparameter]
    seed_flag: str | None = None
    seed_sites: int = 0
    family: str = "user"
    reported: list[str] = []

    @property
    def defaults(self) -> dict[str, Value]:
        return {h.name: h.default for h in self.hyperparameters}

    def by_flag(self) -> dict[str, Hyperparameter]:
        return {h.name: h for h in self.hyperparameters if h.kind in FLAG_KINDS}


@dataclass
class _Site:
    """A hyperparameter and the literal nodes that hold its default (None: a flag with no `default=`)."""

    param: Hyperparameter
    nodes: list[ast.expr | None]
    call: ast.Call | None = None
    after: tuple[ast.stmt, str] | None = None  # no literal yet: `<parser>.set_defaults(...)` goes after it


@dataclass
class _Scan:
    tree: ast.Module
    sites: list[_Site] = field(default_factory=list)
    seeds: list[ast.expr] = field(default_factory=list)
    seed_flag: str | None = None
