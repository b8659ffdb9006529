"""A value that reaches a request header never writes headers of its own: a CR or LF in it
fails the call before a byte is sent."""

from __future__ import annotations

import asyncio

import pytest

from arena.upstream.client import Answer, Endpoint, Limits, stream_chat
from arena.upstream.http import upstream_client


async def _call(api_key: str) -> tuple[Answer, int]:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key=api_key)
    try:
        async with upstream_client() as client:
            answer = await stream_chat(
                client, endpoint, [{"role": "user", "content": "hi"}], Limits(), lambda _: None
            )
    finally:
        server.close()
        await server.wait_closed()
    return answer, connections


@pytest.mark.parametrize(
    "api_key",
    ["key\r\nX-Injected: 1", "key\nX-Injected: 1", "key\rX", "key\x00", "key\x7f", "clé-é€"],
)
def test_a_key_that_would_break_the_request_head_fails_the_call_unsent(api_key: str) -> None:
    answer, connections = asyncio.run(_call(api_key))
    assert answer.failure is not None and answer.failure.kind == "connect", answer
    assert "refused to send" in answer.failure.detail
    assert api_key not in answer.failure.detail  # the key never reaches the log
    assert connections == 0
