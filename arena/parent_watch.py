"""Helper processes that end when the process that started them is gone.

A process-pool worker waits for its next task on a queue whose writing end it holds itself, so it
never sees the queue end: if its parent is killed outright (SIGKILL, the kernel's OOM killer) it
waits forever, holding its memory (a recompute's, hundreds of megabytes at a million votes).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Final

# How often a helper process looks for its parent. Its cost is one system call.
POLL_SECONDS: Final = 1.0


def exit_with_parent() -> None:
    """From now on, end this process within POLL_SECONDS of its parent's death (it is then
    adopted by another process, so its parent id changes). For a pool's initializer; a watch
    does not survive a fork, so forked pools call it too."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os._exit(1)  # no clean-up to run: nothing asked for its work any more

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
