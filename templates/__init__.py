"""Jinja2 templates: prompts (prompts/*.j2) and markdown layouts (*.md.j2), shipped inside the package."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

import jinja2

# Markdown's punctuation: escaped with a backslash, each renders as itself, never as a link, image or tag.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]#!<>|~&])")


def md_text(text: str) -> str:
    """A person's text (an idea) as literal markdown: `[x](http://...)` and `![](...)` show as typed."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


@cache
def environment() -> jinja2.Environment:
    """One environment for every template; undefined names are errors, so a typo never renders as blank."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files(__name__))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["md_text"] = md_text
    return env
