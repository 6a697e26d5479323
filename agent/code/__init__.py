"""The code stage: the plan's code changes as a checked patch to the training script.

- `coder`: proposes, checks and finalizes the patch
- `edits`: the deterministic edits of the tool's own vocabulary
- `diffs`: unified diffs of the changed files
- `checks`: the static checks a patch passes before it runs
- `source`: a script's text and syntax tree, spliced without losing its formatting
- `safety`: the static rules a model-written change passes before it runs
"""

__all__ = ["checks", "coder", "diffs", "edits", "safety", "source"]
