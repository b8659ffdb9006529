"""Independent pieces of one computation, spread over forked processes.

The recompute rates every category in every view of the same counted votes: dozens of tables,
each independent of the others, mostly Python and numpy that hold one core. Forked children
share the parent's coded battles without copying or pickling them; each runs a group of the
pieces, balanced by their estimated cost, and sends back only its results.

A fork copies one thread only, so it is used only where it is safe: on Linux, from a process
running no other thread (the recompute's worker process). Elsewhere, or with one process, the
pieces run here, in order, with the same results.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from arena.parent_watch import exit_with_parent

log = logging.getLogger(__name__)

Result = TypeVar("Result")

# The work of the map in progress: set before the fork, so the children inherit it.
_work: Callable[[int], Any] | None = None


def _run_group(pieces: Sequence[int]) -> list[Any]:
    if _work is None:
        raise RuntimeError("no forked map is running")
    return [_work(piece) for piece in pieces]


def can_fork() -> bool:
    """Whether forking is safe and allowed here: on Linux, with this thread the only one, in a
    process that may have children (a multiprocessing.Pool's daemonic workers may not)."""
    return (
        sys.platform.startswith("linux")
        and threading.active_count() == 1
        and not multiprocessing.current_process().daemon
    )


def balanced_groups(costs: Sequence[float], groups: int) -> list[list[int]]:
    """Piece indices split into `groups` lists of about equal total cost (largest first, each
    to the lightest group), each list in increasing order."""
    loads = [0.0] * groups
    members: list[list[int]] = [[] for _ in range(groups)]
    for piece in sorted(range(len(costs)), key=lambda i: -costs[i]):
        lightest = loads.index(min(loads))
        loads[lightest] += costs[piece]
        members[lightest].append(piece)
    return [sorted(group) for group in members if group]


def forked_map(
    work: Callable[[int], Result], costs: Sequence[float], *, processes: int
) -> list[Result]:
    """[work(0), work(1), ...] for each of len(costs) pieces, on up to `processes` processes
    (this one included) when can_fork(); `work` must not touch anything a fork cannot share (a
    database connection). A child that dies has its pieces run here instead."""
    global _work
    pieces = len(costs)
    groups = balanced_groups(costs, min(processes, pieces)) if pieces else []
    if len(groups) <= 1 or not can_fork():
        return [work(piece) for piece in range(pieces)]
    results: dict[int, Result] = {}
    _work = work
    try:
        context = multiprocessing.get_context("fork")
        # With fork, the executor starts every child at the first submit, before its own thread.
        with ProcessPoolExecutor(
            max_workers=len(groups) - 1, mp_context=context, initializer=exit_with_parent
        ) as pool:
            futures: list[tuple[list[int], Future[list[Any]] | None]] = []
            for group in groups[1:]:
                try:
                    futures.append((group, pool.submit(_run_group, group)))
                except Exception:
                    log.exception("could not fork; %d piece(s) run here", len(group))
                    futures.append((group, None))
            results.update(zip(groups[0], _run_group(groups[0]), strict=True))
            for group, future in futures:
                try:
                    if future is not None:
                        results.update(zip(group, future.result(), strict=True))
                        continue
                except Exception:
                    log.exception("a forked process failed; its %d piece(s) run here", len(group))
                results.update((piece, work(piece)) for piece in group)
    finally:
        _work = None
    log.info("%d pieces of work ran on %d processes", pieces, len(groups))
    return [results[piece] for piece in range(pieces)]
