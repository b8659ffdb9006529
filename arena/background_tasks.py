"""The background tasks of a worker (recompute, health, rigging scan, webhooks, metrics): how
one is stopped."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a worker's background task and wait until it has ended (nothing if none runs)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
