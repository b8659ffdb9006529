"""The rate limiter on its own: memory for one worker, Redis shared by every worker."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import pytest
from cryptography.fernet import Fernet

from arena.config import Settings
from arena.errors import InvalidInput, TooManyRequests
from arena.ratelimit import RateLimiter, parse_limits, redis_storage_uri
from arena.visitors import Visitor
from tests.conftest import require
from tests.servers import free_port

REDIS_URL = os.environ.get("ARENA_TEST_REDIS_URL", "")


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, secret_key=Fernet.generate_key().decode(), **values)  # type: ignore[call-arg]


ALICE = Visitor(session_hash="alice", ip_hash="home")
BOB = Visitor(session_hash="bob", ip_hash="home")


async def _allowed(limiter: RateLimiter, visitor: Visitor, n: int) -> int:
    passed = 0
    for _ in range(n):
        try:
            await limiter.check("vote", visitor)
            passed += 1
        except TooManyRequests:
            pass
    return passed


def test_parse_limits() -> None:
    assert [str(item) for item in parse_limits("2/minute; 10/day", "X")] == [
        "2 per 1 minute",
        "10 per 1 day",
    ]
    assert parse_limits("  ", "X") == []
    with pytest.raises(InvalidInput, match="ARENA_VOTE_RATE_LIMIT: 'lots' is not a rate limit"):
        parse_limits("lots", "ARENA_VOTE_RATE_LIMIT")
    assert redis_storage_uri("redis://h:1/0") == "async+redis://h:1/0"


def test_memory_limits_per_session_and_per_address() -> None:
    async def run() -> None:
        limiter = RateLimiter.from_settings(
            _settings(vote_rate_limit="3/minute", vote_ip_rate_limit="5/minute")
        )
        assert await _allowed(limiter, ALICE, 10) == 3
        assert await limiter.recently_throttled(ALICE)
        assert not await limiter.recently_throttled(BOB)
        # Bob has his own session allowance but shares the address with Alice.
        assert await _allowed(limiter, BOB, 10) == 2
        with pytest.raises(TooManyRequests) as refused:
            await limiter.check("vote", BOB)
        assert 1 <= refused.value.retry_after <= 60
        # Battles have limits of their own.
        await limiter.check("battle", ALICE)
        await limiter.close()

    asyncio.run(run())


def test_redis_counters_are_shared_between_workers() -> None:
    require(bool(REDIS_URL), "Redis tests need ARENA_TEST_REDIS_URL")

    async def run() -> None:
        settings = _settings(
            redis_url=REDIS_URL,
            rate_limit_key_prefix=f"arena-test-{uuid.uuid4().hex}",
            vote_rate_limit="4/minute",
            vote_ip_rate_limit="",
        )
        worker_1, worker_2 = (
            RateLimiter.from_settings(settings),
            RateLimiter.from_settings(settings),
        )
        try:
            reachable = await worker_1.storage.check()
            require(reachable, f"Redis at ARENA_TEST_REDIS_URL ({REDIS_URL}) does not answer")
            assert await _allowed(worker_1, ALICE, 3) == 3
            # The second worker sees the first one's count: one left, then refused.
            assert await _allowed(worker_2, ALICE, 3) == 1
            assert await worker_1.recently_throttled(ALICE)
        finally:
            await worker_1.close()
            await worker_2.close()

    asyncio.run(run())


def test_an_unreachable_redis_lets_requests_through_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        # A port nobody listens on: the counters' storage is down.
        settings = _settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
        limiter = RateLimiter.from_settings(settings)
        try:
            started = time.monotonic()
            await limiter.check("vote", ALICE)
            await limiter.check("battle", ALICE)
            assert not await limiter.recently_throttled(ALICE)
            assert time.monotonic() - started < 5
        finally:
            await limiter.close()

    with caplog.at_level(logging.ERROR, logger="arena.ratelimit"):
        asyncio.run(run())
    outage = [r for r in caplog.records if "rate limits not enforced" in r.getMessage()]
    assert len(outage) == 1  # logged once, not once per request
