"""Jinja2 templates: prompts (prompts/*.j2) and markdown layouts (*.md.j2), shipped inside the package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import jinja2


@cache
def environment() -> jinja2.Environment:
    """One environment for every template; undefined names are errors, so a typo never renders as blank."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files(__name__))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
