"""Unified diffs and exact search/replace blocks: the two forms a patch takes for a person and for a machine.

Every patch, structured or from an LLM, ends as a list of `FileEdit`s whose `old` text occurs exactly once, so
applying it is never a guess: a block that does not match, or matches twice, is refused with a message that
says which. A model's block may say `every` (change each place it occurs), and `merged` makes a block it
repeats one such block.
"""

from __future__ import annotations

import difflib
import hashlib
import io
from collections.abc import Collection, Mapping

from agent.code.source import EditError
from agent.schemas import FileEdit


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _diff_lines(text: str) -> list[str]:
    lines = io.StringIO(text, newline="\n").readlines()
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def unified_diff(name: str, before: str, after: str) -> str:
    """A diff `git apply` takes (paths a/<name> b/<name>, a file without a final newline marked as such)."""
    return "".join(difflib.unified_diff(_diff_lines(before), _diff_lines(after), f"a/{name}", f"b/{name}"))


def apply_file_edits(
    files: Mapping[str, str], edits: list[FileEdit], every: Collection[int] = ()
) -> dict[str, str]:
    """`files` with each edit applied in order; an edit whose `old` is missing, empty or repeated is refused,
    except that the edits numbered (from 1) in `every` change each place their `old` occurs."""
    out = dict(files)
    for n, edit in enumerate(edits, 1):
        if edit.path not in out:
            raise EditError(f"edit {n} is for {edit.path!r}; only {', '.join(sorted(out))} may be edited")
        if not edit.old:
            raise EditError(f"edit {n} ({edit.path}): the search block is empty")
        count = out[edit.path].count(edit.old)
        if count == 0 or (count > 1 and n not in every):
            first = edit.old.strip().splitlines()[0] if edit.old.strip() else edit.old
            if count == 0:
                lines = [line.strip() for line in out[edit.path].splitlines() if line.strip()]
                near = difflib.get_close_matches(first.strip(), lines, n=1, cutoff=0.5)
                problem = "is not in the file" + (f"; the closest line is {near[0][:120]!r}" if near else "")
            else:
                problem = f"matches {count} places; add lines around it to pick one, or set every: true to change all"
            raise EditError(f"edit {n} ({edit.path}): the search block starting {first[:60]!r} {problem}")
        out[edit.path] = out[edit.path].replace(edit.old, edit.new, -1 if n in every else 1)
    return out


def to_file_edits(path: str, before: str, after: str) -> list[FileEdit]:
    """The smallest search/replace blocks (one per changed hunk, widened until unique) that turn before into after."""
    a, b = io.StringIO(before, newline="\n").readlines(), io.StringIO(after, newline="\n").readlines()
    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        lo, hi = i1, i2
        while not ("".join(a[lo:hi]) and before.count("".join(a[lo:hi])) == 1) and (lo > 0 or hi < len(a)):
            lo, hi = max(0, lo - 1), min(len(a), hi + 1)
        new = "".join(a[lo:i1] + b[j1:j2] + a[i2:hi])
        edits.append(FileEdit(path=path, old="".join(a[lo:hi]), new=new))
    try:
        if apply_file_edits({path: before}, edits)[path] == after:
            return edits
    except EditError:
        pass
    return [FileEdit(path=path, old=before, new=after)] if before != after else []


class ModelEdit(FileEdit):
    """A model's search/replace block: `old` occurs once, or, with `every`, wherever it occurs (a small model
    asked to swap each ReLU repeats `nn.ReLU()` rather than copy the lines that tell them apart)."""

    every: bool = False


def merged(edits: list[ModelEdit]) -> list[ModelEdit]:
    """The edits with repeats of one search/replace block made one block marked `every`: a small model asked
    to change each ReLU writes the same `nn.ReLU()` block once per place it means."""
    seen: dict[tuple[str, str, str], ModelEdit] = {}
    for edit in edits:
        key = (edit.path, edit.old, edit.new)
        seen[key] = edit.model_copy(update={"every": True}) if key in seen else edit
    return list(seen.values())
