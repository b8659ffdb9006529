"""Rendered pages and tables kept per data generation: most page views touch no database at all."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Final

# Facts a model owner can edit without a status event (organisation, licence) show up within this.
CACHE_SECONDS: Final = 30.0
# How often a worker asks the database whether a new snapshot exists; in between, every request
# is served from memory. A new snapshot reaches the pages within this.
GENERATION_SECONDS: Final = 1.0
MAX_ENTRIES: Final = 512
# Bodies smaller than this are not worth compressing.
GZIP_FROM_BYTES: Final = 1024


@dataclass(frozen=True)
class Rendered:
    """A finished response body with its headers; gzip-compressed once, next to the plain body."""

    body: bytes
    media_type: str
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str = ""
    gzipped: bytes | None = None

    @classmethod
    def make(
        cls,
        body: bytes,
        media_type: str,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Rendered:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        packed = (
            gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_FROM_BYTES else None
        )
        return cls(body, media_type, status_code, dict(headers or {}), etag, packed)


@dataclass
class _Entry:
    generation: Hashable
    expires: float
    value: Rendered


class PageCache:
    """Keyed by what a response shows; an entry is good while the data generation is unchanged and
    for at most CACHE_SECONDS. One build per key at a time; while it runs, requests get the
    previous version if there is one, else they wait for the build."""

    def __init__(
        self,
        *,
        seconds: float = CACHE_SECONDS,
        generation_seconds: float = GENERATION_SECONDS,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.seconds = seconds
        self.generation_seconds = generation_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._generation: Hashable = None
        self._generation_checked = -float("inf")
        self._generation_lock = asyncio.Lock()
        self._generation_known = False
        self._generation_refreshing = False

    async def generation(self, fetch: Callable[[], Awaitable[Hashable]]) -> Hashable:
        """The data generation, asked of the database at most once per generation_seconds.

        While one request asks, the others go on with the generation known so far: queueing them
        all behind a lock would serialise every request of the worker, one per loop turn, and
        the queue refills faster than it drains under load (a lock convoy).
        """
        if time.monotonic() - self._generation_checked < self.generation_seconds:
            return self._generation
        if not self._generation_known:
            async with self._generation_lock:  # only until the very first answer
                if not self._generation_known:
                    self._generation = await fetch()
                    self._generation_checked = time.monotonic()
                    self._generation_known = True
            return self._generation
        if self._generation_refreshing:
            return self._generation
        self._generation_refreshing = True
        try:
            self._generation = await fetch()
            self._generation_checked = time.monotonic()
        finally:
            self._generation_refreshing = False
        return self._generation

    def _fresh(self, key: Hashable, generation: Hashable) -> Rendered | None:
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation or entry.expires < time.monotonic():
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def get(
        self, key: Hashable, generation: Hashable, build: Callable[[], Awaitable[Rendered]]
    ) -> Rendered:
        hit = self._fresh(key, generation)
        if hit is not None:
            return hit
        lock = self._locks.setdefault(key, asyncio.Lock())
        stale = self._entries.get(key)
        if stale is not None and lock.locked():
            # Someone is already rebuilding this: answer with the previous version meanwhile
            # rather than queue every request behind one render.
            return stale.value
        async with lock:
            hit = self._fresh(key, generation)
            if hit is not None:
                return hit
            value = await build()
            self._entries[key] = _Entry(generation, time.monotonic() + self.seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                old, _ = self._entries.popitem(last=False)
                self._locks.pop(old, None)
        return value
