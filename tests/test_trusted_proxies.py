"""`arena serve` believes X-Forwarded-For only from the proxies named in ARENA_TRUSTED_PROXIES."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from tests.servers import arena_serve, free_port


def _serve(tmp_path: Path, **settings: str) -> AbstractContextManager[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    env |= {"ARENA_DATA_DIR": str(tmp_path / "data"), "ARENA_PORT": str(port)} | settings
    return arena_serve(tmp_path, env)


def _statuses(base: str, forwarded_for: str, n: int) -> list[int]:
    headers = {"Authorization": "Bearer arena_wrong", "X-Forwarded-For": forwarded_for}
    return [httpx.get(f"{base}/api/models/mine", headers=headers).status_code for _ in range(n)]


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    tmp_path: Path, trusted: str
) -> None:
    with _serve(
        tmp_path, ARENA_TRUSTED_PROXIES=trusted, ARENA_AUTH_FAILURES_PER_MINUTE="2"
    ) as base:
        assert _statuses(base, "203.0.113.7", 3) == [401, 401, 429]
        # Another client behind the proxy: its own budget only when the proxy is trusted.
        # Untrusted, the header is ignored, so a client cannot escape its limit by inventing one.
        assert _statuses(base, "203.0.113.8", 1) == ([401] if trusted else [429])
