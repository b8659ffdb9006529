"""Real servers on loopback for the tests: any ASGI app under uvicorn in a thread of its own, and
the `arena serve` command in a process of its own."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ARENA_COMMAND = [sys.executable, "-c", "from arena.cli import main; main()"]


async def read_request(reader: asyncio.StreamReader) -> None:
    """Read one HTTP/1.1 request with a Content-Length body, for raw asyncio test servers."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    await reader.readexactly(length)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1:<port> until stop(); started() waits until it listens."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=3,
            **config,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} did not start within 20 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def call(self, work: Callable[[], Any]) -> Any:
        """Run a coroutine factory on the server's own loop (for direct database checks)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout=30)


@contextmanager
def arena_serve(
    cwd: Path, env: dict[str, str], *args: str, output: Path | None = None
) -> Iterator[str]:
    """`arena db upgrade`, then `arena serve ARGS` on env's ARENA_PORT; yields its base URL.
    What it prints goes to `output` when given."""
    subprocess.run([*ARENA_COMMAND, "db", "upgrade"], env=env, cwd=cwd, check=True)
    written = None if output is None else output.open("wb")
    server = subprocess.Popen(
        [*ARENA_COMMAND, "serve", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE if written is None else written,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{env['ARENA_PORT']}"
    try:
        # Generous: a cold start imports the whole app, slow on a busy two-core machine.
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[0].decode()
            assert time.monotonic() < deadline, f"arena serve {' '.join(args)} did not come up"
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=15)
        if server.stdout is not None:
            server.stdout.close()
        if written is not None:
            written.close()
