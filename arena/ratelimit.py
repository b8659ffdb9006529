"""Rate limits per visitor session and per IP hash on battles and votes: 429 with Retry-After.

Counters live in this process's memory for one worker, and in Redis when ARENA_REDIS_URL is set,
so that every worker and host shares them (the `limits` package, sliding-window counters). A
session that was refused is remembered for an hour: its votes in that hour are stored but not
counted (flag `rate_limited`), since a client that hammers the limits is not a person reading.

When Redis cannot be reached the limits are not enforced (the request goes on and the log says
so): an outage of the counters must not turn away every visitor or lose their votes, and the
other checks on a vote (reading time, rigging scan) still run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from fastapi import Depends, Request
from limits import RateLimitItem, RateLimitItemPerHour, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from arena.config import Settings
from arena.errors import InvalidInput, TooManyRequests
from arena.visitors import Visitor, VisitorDep

log = logging.getLogger(__name__)

Action = Literal["battle", "vote"]
_THROTTLED: Final = RateLimitItemPerHour(1)
_WHAT: Final[dict[Action, str]] = {"battle": "new battles", "vote": "votes"}
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


def redis_storage_uri(url: str) -> str:
    """`redis://host:6379/0` as people write it, in the scheme the async storage expects."""
    return url if url.startswith("async+") else "async+" + url


@dataclass(frozen=True)
class Limits:
    session: list[RateLimitItem]
    ip: list[RateLimitItem]


class RateLimiter:
    """Checks and counts one request against the session's and the IP's limits for an action."""

    def __init__(self, storage: Storage, limits: dict[Action, Limits], prefix: str) -> None:
        self.storage = storage
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self.limits = limits
        self.prefix = prefix
        self._outage_logged_at = -math.inf

    def _storage_failed(self, exc: StorageError) -> None:
        now = time.monotonic()
        if now - self._outage_logged_at >= _OUTAGE_LOG_SECONDS:
            self._outage_logged_at = now
            log.error("rate limits not enforced: their storage does not answer (%s)", exc)

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
        storage: Storage
        if settings.redis_url:
            storage = RedisStorage(
                redis_storage_uri(settings.redis_url),
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=settings.rate_limit_key_prefix,
                socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
                socket_timeout=_REDIS_TIMEOUT_SECONDS,
            )
        else:
            storage = MemoryStorage()
        return cls(storage, limits, settings.rate_limit_key_prefix)

    async def check(self, action: Action, visitor: Visitor) -> None:
        """Count this request, or raise TooManyRequests with the seconds until it would pass."""
        try:
            await self._check(action, visitor)
        except StorageError as exc:
            self._storage_failed(exc)

    async def _check(self, action: Action, visitor: Visitor) -> None:
        limits = self.limits[action]
        checks = [(item, "session", visitor.session_hash) for item in limits.session] + [
            (item, "ip", visitor.ip_hash) for item in limits.ip
        ]
        for item, scope, key in checks:
            if await self.strategy.hit(item, self.prefix, action, scope, key):
                continue
            stats = await self.strategy.get_window_stats(item, self.prefix, action, scope, key)
            wait = max(1, math.ceil(stats.reset_time - time.time()))
            await self.strategy.hit(_THROTTLED, self.prefix, "throttled", visitor.session_hash)
            who = "this browser session" if scope == "session" else "your network address"
            raise TooManyRequests(
                f"Too many {_WHAT[action]} from {who} (limit {item}); try again in {wait} s.",
                wait,
            )

    async def recently_throttled(self, visitor: Visitor) -> bool:
        """Whether this session was refused for a rate limit within the last hour."""
        try:
            return not await self.strategy.test(
                _THROTTLED, self.prefix, "throttled", visitor.session_hash
            )
        except StorageError as exc:
            self._storage_failed(exc)
            return False

    async def close(self) -> None:
        # `limits` has no public close; its redis-py client is reached through the bridge.
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        closer = getattr(client, "aclose", None)
        if closer is not None:
            await closer()


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def limit_battles(request: Request, visitor: VisitorDep) -> None:
    await _limiter(request).check("battle", visitor)


async def limit_votes(request: Request, visitor: VisitorDep) -> bool:
    """Count the vote against the limits; True when the session was throttled recently."""
    limiter = _limiter(request)
    await limiter.check("vote", visitor)
    return await limiter.recently_throttled(visitor)


VoteThrottledDep = Annotated[bool, Depends(limit_votes)]
