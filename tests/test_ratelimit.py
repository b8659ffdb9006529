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
from arena.ratelimit import (
    Counters,
    MemoryCounters,
    RateLimiter,
    RedisCounters,
    Window,
    parse_limits,
    seconds_until_allowed,
    weighted_count,
    windows_now,
)
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


def test_memory_limits_per_session_and_per_address() -> None:
    async def run() -> None:
        limiter = RateLimiter.from_settings(
            _settings(vote_rate_limit="3/minute", vote_ip_rate_limit="5/minute")
        )
        assert not await limiter.check("vote", ALICE)
        assert await _allowed(limiter, ALICE, 10) == 2
        # Bob has his own session allowance but shares the address with Alice.
        assert not await limiter.check("vote", BOB)
        assert await _allowed(limiter, BOB, 10) == 1
        with pytest.raises(TooManyRequests) as refused:
            await limiter.check("vote", BOB)
        assert 1 <= refused.value.retry_after <= 60
        # Battles have limits of their own; the refusal is remembered for the votes.
        assert await limiter.check("battle", ALICE)
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
            assert isinstance(worker_1.counters, RedisCounters)
            reachable = await worker_1.counters.ping()
            require(reachable, f"Redis at ARENA_TEST_REDIS_URL ({REDIS_URL}) does not answer")
            assert await _allowed(worker_1, ALICE, 3) == 3
            # The second worker sees the first one's count: one left, then refused.
            assert await _allowed(worker_2, ALICE, 3) == 1
            # ... and the refusal by the second is remembered by the first, for the same session.
            with pytest.raises(TooManyRequests):
                await worker_1.check("vote", ALICE)
            assert await worker_1.check("battle", ALICE)
            assert not await worker_2.check("battle", BOB)
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
            assert not await limiter.check("vote", ALICE)
            assert not await limiter.check("battle", ALICE)
            assert time.monotonic() - started < 5
        finally:
            await limiter.close()

    with caplog.at_level(logging.ERROR, logger="arena.ratelimit"):
        asyncio.run(run())
    outage = [r for r in caplog.records if "rate limits not enforced" in r.getMessage()]
    assert len(outage) == 1  # logged once, not once per request


def test_sliding_window_weights_the_previous_window() -> None:
    assert weighted_count(previous=10, current=3, elapsed=0.25) == 7 + 3
    assert weighted_count(previous=10, current=3, elapsed=0.95) == 0 + 3
    window = Window("p", "c", allowance=6, seconds=60, elapsed=0.5)
    # 10 * 0.5 + 2 = 7 is over; one more fits once the previous share is 3: elapsed > 0.6.
    assert seconds_until_allowed(window, previous=10, current=2) == pytest.approx(6.0)
    window = Window("p", "c", allowance=10, seconds=60, elapsed=0.5)
    # This window alone is over the limit: the next one, once 12 * (1 - e) < 10.
    assert seconds_until_allowed(window, previous=0, current=12) == pytest.approx(30 + 10)


def _counters(kind: str) -> Counters:
    if kind == "memory":
        return MemoryCounters()
    require(bool(REDIS_URL), "Redis tests need ARENA_TEST_REDIS_URL")
    return RedisCounters(REDIS_URL)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_counters_refuse_without_counting_and_free_up_as_the_window_slides(kind: str) -> None:
    minute, day = parse_limits("3/minute", "X"), parse_limits("100/day", "X")
    base, mark = f"test-{uuid.uuid4().hex}", f"mark-{uuid.uuid4().hex}"
    started = 6_000_020.0  # 20 s into a minute window

    async def run() -> None:
        counters = _counters(kind)
        try:
            for n in range(3):
                counted = await counters.count(windows_now(base, minute + day, started + n), mark)
                assert counted.refused is None and not counted.throttled
            refused = await counters.count(windows_now(base, minute + day, started + 3), mark)
            assert (refused.refused, refused.previous, refused.current) == (0, 0, 3)
            # The refusal counted against neither limit, and the session is marked.
            day_only = await counters.count(windows_now(base, day, started + 4), mark)
            assert day_only.refused is None and day_only.throttled
            assert (
                await counters.count(windows_now(base, minute, started + 39), mark)
            ).refused == 0

            async def refused_at(offset: float) -> bool:
                outcome = await counters.count(windows_now(base, minute, started + offset), mark)
                return outcome.refused is not None

            # The next minute: the 3 weigh 3 * (1 - elapsed), rounded down, beside the new count.
            assert await refused_at(40)  # 3 + 0 + 1 > 3
            assert not await refused_at(41)  # 2 + 0 + 1
            assert await refused_at(42)  # 2 + 1 + 1
            assert not await refused_at(61)  # 1 + 1 + 1
        finally:
            await counters.close()

    asyncio.run(run())
