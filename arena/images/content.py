"""A visitor's prompt as sent upstream, in a battle or a chat: its text, or with its images
OpenAI's list of content parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arena.images.decoding import CleanImage


def user_content(prompt: str, images: Sequence[CleanImage]) -> str | list[dict[str, Any]]:
    """A text-only prompt stays a string: endpoints that read no images take only that form."""
    if not images:
        return prompt
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    parts.extend({"type": "image_url", "image_url": {"url": image.data_url()}} for image in images)
    return parts
