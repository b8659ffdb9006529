"""The arena as a real separate process (uvicorn), to measure its memory or kill it with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy.ext.asyncio import AsyncSession

from arena.config import Settings
from arena.http_protocol import IMPORT_PATH
from arena.models import Battle, BattleStatus, Message, Side, utcnow
from arena.visitors import SESSION_COOKIE, salted_hash
from tests.conftest import run_db
from tests.servers import free_port


def environment(settings: Settings) -> dict[str, str]:
    """The ARENA_* variables that make a worker process build the app from these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, dict | list):
            value = json.dumps(value)
        env[f"ARENA_{name.upper()}"] = str(value)
    return env


@dataclass
class ArenaProcess:
    """`uvicorn arena.app:create_app --factory --http arena.http_protocol:ArenaHttpProtocol` on a
    free loopback port."""

    settings: Settings
    log_path: Path
    port: int = field(default_factory=free_port)
    # True: started as an operator starts it, `arena serve` (its workers, its logging).
    cli: bool = False
    process: subprocess.Popen[bytes] | None = None
    # Variables beside the settings (HTTPS_PROXY...); None removes one the tests run with.
    env: dict[str, str | None] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ArenaProcess:
        return self.launch().wait_until_ready(timeout)

    def launch(self) -> ArenaProcess:
        """Start the process without waiting for it (several start faster side by side)."""
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "arena.app:create_app",
            "--factory",
            "--http",
            IMPORT_PATH,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        env = environment(self.settings)
        if self.cli:
            command = [str(Path(sys.executable).parent / "arena"), "serve"]
            env.update(ARENA_HOST="127.0.0.1", ARENA_PORT=str(self.port))
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_until_ready(self, timeout: float = 30) -> ArenaProcess:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the arena exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"the arena did not answer within {timeout} s")

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, nothing the process could still do."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def seed_ready_battles(
    settings: Settings, model_ids: tuple[int, int], count: int, **battle: Any
) -> list[tuple[str, str]]:
    """`count` battles that are ready to be voted on, each owned by its own session:
    (battle id, session cookie). The answers were shown ten minutes ago: long enough to have
    been read, well inside the vote window."""
    secret = settings.resolved_secret_key()
    shown = utcnow() - timedelta(minutes=10)
    made = [(f"ready-{i:06d}-{os.urandom(4).hex()}", os.urandom(18).hex()) for i in range(count)]

    async def work(session: AsyncSession) -> None:
        for battle_id, cookie in made:
            session.add(
                Battle(
                    id=battle_id,
                    model_a_id=model_ids[0],
                    model_b_id=model_ids[1],
                    session_hash=salted_hash(secret, "session:" + cookie),
                    ip_hash=salted_hash(secret, "ip:127.0.0.1"),
                    status=BattleStatus.ready,
                    turns=1,
                    category_tags=[],
                    created_at=shown,
                    stream_started_at=shown,
                    ready_at=shown,
                    answer_chars=200,
                    **battle,
                )
            )
            for side in (Side.user, Side.a, Side.b):
                session.add(Message(battle_id=battle_id, turn=1, side=side, content="seeded"))

    run_db(settings, work)
    return made


def cookie_header(session_id: str) -> dict[str, str]:
    """The session cookie as a request header (httpx deprecates per-request cookie jars)."""
    return {"Cookie": f"{SESSION_COOKIE}={session_id}"}
