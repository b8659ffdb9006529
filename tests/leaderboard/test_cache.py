"""The page cache: one build per key and generation, a stale page while a rebuild runs."""

from __future__ import annotations

import asyncio
import gzip

from arena.leaderboard.cache import PageCache, Rendered


def test_one_build_per_generation_and_stale_while_rebuilding() -> None:
    async def scenario() -> None:
        cache = PageCache(seconds=60, generation_seconds=60)
        builds: list[str] = []
        release = asyncio.Event()

        async def build_v1() -> Rendered:
            builds.append("v1")
            await asyncio.sleep(0.01)
            return Rendered.make(b"version one" * 200, "text/plain")

        async def build_v2() -> Rendered:
            builds.append("v2")
            await release.wait()
            return Rendered.make(b"version two", "text/plain")

        first = await asyncio.gather(*(cache.get("page", 1, build_v1) for _ in range(20)))
        assert builds == ["v1"] and {r.body for r in first} == {b"version one" * 200}
        assert gzip.decompress(first[0].gzipped or b"") == first[0].body
        # A new generation: one request rebuilds, the others get the previous page meanwhile.
        rebuilding = asyncio.create_task(cache.get("page", 2, build_v2))
        await asyncio.sleep(0.01)
        meanwhile = await cache.get("page", 2, build_v2)
        assert meanwhile.body.startswith(b"version one") and builds == ["v1", "v2"]
        release.set()
        assert (await rebuilding).body == b"version two"
        assert (await cache.get("page", 2, build_v2)).body == b"version two"

    asyncio.run(scenario())


def test_generation_is_asked_at_most_once_per_window() -> None:
    async def scenario() -> None:
        cache = PageCache(generation_seconds=60)
        asked: list[int] = []

        async def fetch() -> int:
            asked.append(1)
            await asyncio.sleep(0.01)
            return 7

        results = await asyncio.gather(*(cache.generation(fetch) for _ in range(30)))
        assert results == [7] * 30 and len(asked) == 1
        fresh = PageCache(generation_seconds=0)
        await fresh.generation(fetch)
        await fresh.generation(fetch)
        assert len(asked) == 3

    asyncio.run(scenario())
