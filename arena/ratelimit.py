"""Rate limits per visitor session and per IP hash on battles and votes: 429 with Retry-After.

A follow-up turn costs what a new battle costs (a call to each of two endpoints), so it counts
against the same "battle" limits: a session or address refused new battles cannot keep the
endpoints busy with follow-ups instead.

Counters are sliding windows: the count of the current fixed window plus the previous window's
count, weighted by how much of it still lies inside the sliding window. They live in this
process's memory for one worker, and in Redis when ARENA_REDIS_URL is set, so that every worker
and host shares them. With Redis a request costs one round trip: one script checks every limit
of the action, counts the request against all of them only when all allow it, and answers
whether the session was refused within the last hour. A refused session is remembered for an
hour: its votes in that hour are stored but not counted (flag `rate_limited`), since a client
that hammers the limits is not a person reading.

When Redis cannot be reached the limits are not enforced (the request goes on and the log says
so): an outage of the counters must not turn away every visitor or lose their votes, and the
other checks on a vote (reading time, rigging scan) still run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Annotated, Final, Literal, Protocol

import redis.asyncio as redis
from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from redis.exceptions import RedisError

from arena import metrics
from arena.config import Settings
from arena.errors import InvalidInput, TooManyRequests
from arena.visitors import Visitor, VisitorDep

log = logging.getLogger(__name__)

Action = Literal["battle", "vote"]
_WHAT: Final[dict[Action, str]] = {"battle": "new battles and follow-ups", "vote": "votes"}
# How long a refused session's votes are not counted.
THROTTLED_SECONDS: Final = 3600
# A Redis that does not answer must fail fast: every battle and vote waits on it.
_REDIS_TIMEOUT_SECONDS: Final = 0.5
_OUTAGE_LOG_SECONDS: Final = 30.0


def parse_limits(text: str, setting: str) -> list[RateLimitItem]:
    """`"20/minute;300/day"` as limit items; an empty text is no limit."""
    if not text.strip():
        return []
    try:
        return list(parse_many(text))
    except ValueError as exc:
        raise InvalidInput(
            f"{setting}: {text!r} is not a rate limit such as '20/minute;300/day' ({exc})"
        ) from None


@dataclass(frozen=True)
class Window:
    """One limit at one moment: its two counters and how far the current window has run."""

    previous_key: str
    current_key: str
    allowance: int
    seconds: int
    elapsed: float  # fraction of the current window gone, in [0, 1)


def windows_now(base: str, items: list[RateLimitItem], now: float) -> list[Window]:
    windows = []
    for item in items:
        seconds = item.get_expiry()
        index, position = divmod(now, seconds)
        windows.append(
            Window(
                previous_key=f"{base}:{item.key_for()}:{int(index) - 1}",
                current_key=f"{base}:{item.key_for()}:{int(index)}",
                allowance=item.amount,
                seconds=seconds,
                elapsed=position / seconds,
            )
        )
    return windows


def weighted_count(previous: int, current: int, elapsed: float) -> int:
    return math.floor(previous * (1 - elapsed)) + current


def seconds_until_allowed(window: Window, previous: int, current: int) -> float:
    """How long until one more request fits in `window`, given its two counts now."""
    room = window.allowance - 1  # the weighted count must fall to this
    if current <= room:
        # Within this window, as the previous window's share fades.
        fade_to = 1 - (room - current + 1) / previous
        return max(0.0, (fade_to - window.elapsed) * window.seconds)
    # Not before the next window, where this window's count becomes the fading share.
    fade_to = max(0.0, 1 - window.allowance / current)
    return (1 - window.elapsed + fade_to) * window.seconds


@dataclass(frozen=True)
class Outcome:
    refused: int | None  # index of the window that refused the request; None when counted
    previous: int = 0  # that window's counts, to say when to come back
    current: int = 0
    throttled: bool = False  # the session was refused within the last hour


class Counters(Protocol):
    async def count(self, windows: list[Window], throttle_key: str) -> Outcome:
        """Count a request in every window if all allow it; else mark the session throttled."""
        ...

    async def close(self) -> None: ...


class MemoryCounters:
    """The counters of one worker process."""

    _PURGE_SECONDS: Final = 60.0

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}  # key: (count, monotonic expiry)
        self._next_purge = time.monotonic() + self._PURGE_SECONDS

    def _get(self, key: str, now: float) -> int:
        count, expires_at = self._counts.get(key, (0, 0.0))
        return count if expires_at > now else 0

    async def count(self, windows: list[Window], throttle_key: str) -> Outcome:
        now = time.monotonic()
        if now >= self._next_purge:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            self._next_purge = now + self._PURGE_SECONDS
        for index, window in enumerate(windows):
            previous = self._get(window.previous_key, now)
            current = self._get(window.current_key, now)
            if weighted_count(previous, current, window.elapsed) + 1 > window.allowance:
                self._counts[throttle_key] = (1, now + THROTTLED_SECONDS)
                return Outcome(index, previous, current, throttled=True)
        for window in windows:
            count = self._get(window.current_key, now) + 1
            self._counts[window.current_key] = (count, now + 2 * window.seconds)
        return Outcome(None, throttled=self._get(throttle_key, now) > 0)

    async def close(self) -> None:
        self._counts.clear()


# The same steps as MemoryCounters.count, atomic inside Redis.
# KEYS: each window's previous and current counter, then the session's throttled mark.
# ARGV: the number of windows, each window's allowance, seconds and elapsed fraction, then how
# long a refusal is remembered.
_COUNT_SCRIPT = """
local n = tonumber(ARGV[1])
local mark = KEYS[2 * n + 1]
for i = 1, n do
  local allowance = tonumber(ARGV[3 * i - 1])
  local elapsed = tonumber(ARGV[3 * i + 1])
  local previous = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local current = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if math.floor(previous * (1 - elapsed)) + current + 1 > allowance then
    redis.call('SET', mark, '1', 'EX', tonumber(ARGV[3 * n + 2]))
    return {i, previous, current, 1}
  end
end
for i = 1, n do
  redis.call('INCR', KEYS[2 * i])
  redis.call('EXPIRE', KEYS[2 * i], 2 * tonumber(ARGV[3 * i]))
end
return {0, 0, 0, redis.call('EXISTS', mark)}
"""


class RedisCounters:
    """Counters shared by every worker and host, one round trip per request."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
        )
        self._script = self._client.register_script(_COUNT_SCRIPT)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def count(self, windows: list[Window], throttle_key: str) -> Outcome:
        keys = [key for w in windows for key in (w.previous_key, w.current_key)]
        args: list[float | int] = [len(windows)]
        for w in windows:
            args += [w.allowance, w.seconds, w.elapsed]
        args.append(THROTTLED_SECONDS)
        refused, previous, current, throttled = await self._script(
            keys=[*keys, throttle_key], args=args
        )
        return Outcome(
            int(refused) - 1 if refused else None, int(previous), int(current), bool(throttled)
        )

    async def close(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True)
class Limits:
    session: list[RateLimitItem]
    ip: list[RateLimitItem]


class RateLimiter:
    """Checks and counts one request against the session's and the IP's limits for an action."""

    def __init__(self, counters: Counters, limits: dict[Action, Limits], prefix: str) -> None:
        self.counters = counters
        self.limits = limits
        self.prefix = prefix
        self._outage_logged_at = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        limits: dict[Action, Limits] = {
            "battle": Limits(
                parse_limits(settings.battle_rate_limit, "ARENA_BATTLE_RATE_LIMIT"),
                parse_limits(settings.battle_ip_rate_limit, "ARENA_BATTLE_IP_RATE_LIMIT"),
            ),
            "vote": Limits(
                parse_limits(settings.vote_rate_limit, "ARENA_VOTE_RATE_LIMIT"),
                parse_limits(settings.vote_ip_rate_limit, "ARENA_VOTE_IP_RATE_LIMIT"),
            ),
        }
        counters: Counters = (
            RedisCounters(settings.redis_url) if settings.redis_url else MemoryCounters()
        )
        return cls(counters, limits, settings.rate_limit_key_prefix)

    def _storage_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._outage_logged_at >= _OUTAGE_LOG_SECONDS:
            self._outage_logged_at = now
            log.error("rate limits not enforced: their storage does not answer (%s)", exc)

    async def check(self, action: Action, visitor: Visitor) -> bool:
        """Count this request, or raise TooManyRequests with the seconds until it would pass.

        Returns whether the session was refused for a rate limit within the last hour."""
        limits = self.limits[action]
        scopes = [("session", visitor.session_hash, limits.session)]
        scopes.append(("ip", visitor.ip_hash, limits.ip))
        now = time.time()
        windows: list[Window] = []
        owners: list[tuple[str, RateLimitItem]] = []
        for scope, key, items in scopes:
            windows += windows_now(f"{self.prefix}:{action}:{scope}:{key}", items, now)
            owners += [(scope, item) for item in items]
        throttle_key = f"{self.prefix}:throttled:{visitor.session_hash}"
        try:
            outcome = await self.counters.count(windows, throttle_key)
        except (RedisError, OSError) as exc:
            self._storage_failed(exc)
            return False
        if outcome.refused is None:
            return outcome.throttled
        scope, item = owners[outcome.refused]
        metrics.rate_limited(action, scope)
        wait = seconds_until_allowed(windows[outcome.refused], outcome.previous, outcome.current)
        retry_after = max(1, math.ceil(wait))
        who = "this browser session" if scope == "session" else "your network address"
        raise TooManyRequests(
            f"Too many {_WHAT[action]} from {who} (limit {item}); try again in {retry_after} s.",
            retry_after,
        )

    async def close(self) -> None:
        await self.counters.close()


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def limit_battles(request: Request, visitor: VisitorDep) -> None:
    """Count a new battle or a follow-up turn: both start two upstream calls."""
    await _limiter(request).check("battle", visitor)


async def limit_votes(request: Request, visitor: VisitorDep) -> bool:
    """Count the vote against the limits; True when the session was throttled recently."""
    return await _limiter(request).check("vote", visitor)


VoteThrottledDep = Annotated[bool, Depends(limit_votes)]
