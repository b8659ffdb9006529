"""MkDocs hook: the settings page's table comes from arena.config.Settings at build time."""

from __future__ import annotations

from typing import Any

from arena.settings_reference import settings_markdown

MARKER = "<!-- settings reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_markdown())
    return markdown
