"""The HTTP client every upstream call goes through: httpx's interface on aiohttp's connections.

httpx's own transport (httpcore over h11, both pure Python) cost about 100 µs of CPU for each
streamed chunk and a few ms for each request in the relay benchmark, more than everything else
a battle does; aiohttp parses HTTP in C and keeps one pool for thousands of connections. The
code above it (the chat client, the probe, the address guard) sees an ordinary httpx.AsyncClient.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# How long an idle upstream connection is kept for the next call to the same endpoint.
_KEEPALIVE_SECONDS = 30.0


def upstream_client(max_connections: int = 2000) -> httpx.AsyncClient:
    tls = httpx.create_ssl_context()  # httpx's certificate bundle, the same as without aiohttp

    def session() -> aiohttp.ClientSession:
        # Made at the first request, inside the running event loop, as aiohttp requires.
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            ssl=tls,
            keepalive_timeout=_KEEPALIVE_SECONDS,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    return httpx.AsyncClient(
        transport=AiohttpTransport(client=session), follow_redirects=False, trust_env=False
    )
