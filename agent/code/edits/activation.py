"""change_activation: the script's ReLU layers become a choice among ReLU, GELU and SiLU, a new hyperparameter.

change_activation(target, value, location): every `nn.ReLU(...)` layer built where a trial's hyperparameters can
reach (run(), a function it calls, the __init__ of a class it builds), or only the one at `location`
(`container.index` of an nn.Sequential or layer list, `attr` for `self.attr = nn.ReLU()`), is built as
`ACTIVATIONS[target]()`, from a new module constant `ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu":
nn.SiLU}` spelled with the script's own namespace. Default `value` or "relu".

At "relu" the patched script builds the same layers as before (an activation has no parameters and draws no
random numbers), so it trains exactly as the original. The constant names every choice at import time, so a
namespace that lacks one (an old torch, a wrapper module) fails the preflight at the default instead of a
trial that draws it. ReLU's `inplace` argument is dropped: in place or not, the values are the same.
Functional calls in forward() (`F.relu(x)`) are not changed: forward() takes no hyperparameters.
"""

from __future__ import annotations

import ast
from typing import Any

from agent.code.edits.base import add_to_block, by_scope, new_name, thread
from agent.code.edits.sites import containers, nn_module
from agent.code.source import EditError, Source, Splice, literal

CHOICES = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU"}
ALIASES = {"swish": "silu"}
CONSTANT = "ACTIVATIONS"


def change_activation(
    text: str, target: str, value: Any = None, location: str | None = None, where: str = "script"
) -> str:
    src = Source(text, where)
    new_name(src, target)
    default = str(value or "relu").lower()
    default = ALIASES.get(default, default)
    if default not in CHOICES:
        raise EditError(f"change_activation: {value!r} is not one of {', '.join(CHOICES)}")
    if any(isinstance(n, ast.Name) and n.id == CONSTANT for n in ast.walk(src.tree)):
        raise EditError(f"{where}: already uses the name {CONSTANT}")
    sites = _at(src, _relus(src), location)
    namespace = _namespace(src, sites)
    splices = []
    for scope, calls in by_scope(src, sites, "the activation").items():
        # other callers of a helper keep their ReLU: its new parameter defaults to "relu"
        threaded, expr = thread(src, scope, target, "relu")
        splices += threaded + [Splice(src.start(c), src.end(c), f"{CONSTANT}[{expr}]()") for c in calls]
    first = min((src.enclosing(c) for c in sites), key=lambda s: s.lineno)  # type: ignore[union-attr,return-value]
    start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
    table = ", ".join(
        f"{literal(k)}: {'ReLU' if namespace is None and k == 'relu' else f'{namespace or nn_module(src)}.{v}'}"
        for k, v in CHOICES.items()
    )
    comment = f"# change_activation's choices: the hyperparameter `{target}` picks one"
    constant = f"{comment}\n{CONSTANT} = {{{table}}}\n\n\n"
    splices.append(Splice(src.line_start(start), src.line_start(start), constant))
    return src.splice([*splices, add_to_block(src, target, default)])


def _relus(src: Source) -> list[ast.Call]:
    """`<namespace>.ReLU(...)` calls, and bare `ReLU(...)` where the script imports it from torch.nn (a class of
    its own named ReLU is not torch's and is left alone)."""
    imported = any(
        isinstance(n, ast.ImportFrom) and n.module == "torch.nn" and any(a.name == "ReLU" for a in n.names)
        for n in src.tree.body
    )
    found = [
        n
        for n in ast.walk(src.tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "ReLU")
            or (isinstance(n.func, ast.Name) and n.func.id == "ReLU" and imported)
        )
    ]
    if not found:
        raise EditError(f"{src.where}: change_activation found no nn.ReLU(...) layer to swap")
    return sorted(found, key=src.start)


def _locations(src: Source, relus: list[ast.Call]) -> dict[str, ast.Call]:
    """Each ReLU's location as add_dropout spells them: `container.index`, or `attr` of `self.attr = ...`."""
    out: dict[str, ast.Call] = {}
    for name, _, entries, _ in containers(src):
        out |= {f"{name}.{i}": e for i, e in enumerate(entries) if e in relus}  # type: ignore[misc]
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and node.value in relus:
            for t in node.targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    out[t.attr] = node.value  # type: ignore[assignment]
    return out


def _at(src: Source, relus: list[ast.Call], location: str | None) -> list[ast.Call]:
    if location is None:
        return relus
    places = _locations(src, relus)
    if location not in places:
        raise EditError(
            f"{src.where}: no ReLU layer at {location!r}; ReLU locations here: {', '.join(places) or 'none'}"
        )
    return [places[location]]


def _namespace(src: Source, sites: list[ast.Call]) -> str | None:
    """The one spelling of the module the ReLUs come from (`nn`, `torch.nn`); None for a bare imported ReLU."""
    spelled = {src.segment(c.func.value) if isinstance(c.func, ast.Attribute) else None for c in sites}
    if len(spelled) != 1:
        raise EditError(
            f"{src.where}: the ReLU layers come from different modules ({', '.join(map(str, spelled))}); "
            "give one location"
        )
    return spelled.pop()
