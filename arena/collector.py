"""How the cyclic garbage collector runs while the app serves."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# A battle's objects are freed by reference counting the moment they are done with: the relay
# makes no reference cycles (a test checks it). With CPython's default, a young pass every 700
# new objects, 200 concurrent battles made about ten passes a second that found nothing, and
# each stopped the event loop, the middle ones for about 6 ms and some for 12 or more: they
# were most of the first-token tail. A pass once the tracked objects have grown by 50,000
# still bounds what cycles made elsewhere can hold, and in a steady load it rarely comes.
SERVING_YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_serving = 0
_thresholds_before: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def serving_collector(young_threshold: int = SERVING_YOUNG_THRESHOLD) -> Iterator[None]:
    """While the block runs, keep what exists now out of the collector's passes (the modules
    and the app live as long as the process; a full pass over them stalls every request for a
    few hundred ms) and collect young objects after `young_threshold` new ones, not 700.

    The process has one collector: with apps nested in one process (tests), the first to
    enter sets it and the last to leave gives back what was there before.
    """
    global _serving, _thresholds_before
    with _lock:
        if _serving == 0:
            _thresholds_before = gc.get_threshold()
            _, middle, old = _thresholds_before
            gc.set_threshold(young_threshold, middle, old)
        _serving += 1
        gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _serving -= 1
            if _serving == 0:
                gc.set_threshold(*_thresholds_before)
                gc.unfreeze()
