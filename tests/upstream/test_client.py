"""Parsing upstream answers from a real loopback server: SSE framing, JSON answers, error shapes,
caps, address pinning."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from arena.upstream.client import (
    Answer,
    Delta,
    Endpoint,
    Failed,
    Finished,
    Limits,
    UpstreamEvent,
    request_body,
    stream_chat,
)
from arena.upstream.http import upstream_client


def _chunk(text: str | None, finish: str | None = None) -> str:
    delta = {"content": text} if text is not None else {}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


_FRAMING = ("content-length", "transfer-encoding")


async def _serve_once(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Callable[[httpx.Request], httpx.Response],
) -> None:
    """Answer one HTTP/1.1 request on a real socket with what `handler` makes of it."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, target, _ = head[0].split(" ", 2)
    headers = [tuple(line.split(": ", 1)) for line in head[1:] if line]
    by_name = {k.lower(): v for k, v in headers}
    body = await reader.readexactly(int(by_name.get("content-length", "0")))
    host = by_name["host"]
    request = httpx.Request(method, f"http://{host}{target}", headers=headers, content=body)
    response = handler(request)
    lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
    lines += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in _FRAMING]
    lines += ["transfer-encoding: chunked", "connection: close"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    async for piece in response.stream:  # type: ignore[union-attr]
        if piece:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


def _run(
    handler: Callable[[httpx.Request], httpx.Response],
    endpoint: Callable[[str], Endpoint] | None = None,
    limits: Limits | None = None,
) -> tuple[Answer, list[UpstreamEvent]]:
    """Call `stream_chat` against a real loopback server; `endpoint` gets its `127.0.0.1:port`."""
    events: list[UpstreamEvent] = []

    async def go() -> Answer:
        server = await asyncio.start_server(lambda r, w: _serve_once(r, w, handler), "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with upstream_client() as client:
                return await stream_chat(
                    client,
                    endpoint(address) if endpoint else Endpoint(f"http://{address}/v1", "m"),
                    [{"role": "user", "content": "hi"}],
                    limits or Limits(),
                    events.append,
                )
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(go()), events


def _sse(
    body: bytes | AsyncIterator[bytes], status: int = 200
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body
        )

    return handler


def test_events_split_anywhere_and_crlf_are_parsed() -> None:
    wire = (
        f": keep-alive\r\n\r\ndata: {_chunk('Hel')}\r\n\r\n"
        f"data: {_chunk('lo')}\n\ndata: {_chunk(None, 'stop')}\n\ndata: [DONE]\n\n"
    ).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(wire), 7):
            yield wire[i : i + 7]

    answer, events = _run(_sse(pieces()))
    assert answer.ok and answer.text == "Hello" and answer.finish_reason == "stop"
    assert events == [Delta("Hel"), Delta("lo"), Finished("stop")]
    assert answer.first_token_ms is not None and answer.chunks == 2


def test_multi_line_data_is_joined() -> None:
    payload = json.dumps({"choices": [{"delta": {"content": "x"}, "finish_reason": "length"}]})
    half = len(payload) // 2
    wire = f"data: {payload[:half]}\ndata: {payload[half:]}\n\n".encode()
    answer, _ = _run(_sse(wire))
    assert answer.ok and answer.text == "x" and answer.finish_reason == "length"


def test_stream_without_done_but_with_finish_reason_is_complete() -> None:
    answer, _ = _run(_sse(f"data: {_chunk('a', 'stop')}\n\n".encode()))
    assert answer.ok and answer.text == "a"


def test_stream_cut_before_the_finish_is_a_failure() -> None:
    answer, events = _run(_sse(f"data: {_chunk('a')}\n\n".encode()))
    assert answer.failure is not None and answer.failure.kind == "protocol"
    assert isinstance(events[-1], Failed)


def test_json_answer_is_accepted() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]},
        )

    answer, events = _run(handler)
    assert answer.ok and answer.text == "whole"
    assert events == [Delta("whole"), Finished("stop")]


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, b'{"error": "bad key"}', "status"),
        (200, b'data: {"error": {"message": "overloaded"}}\n\n', "status"),
        (200, b"data: [1, 2]\n\n", "protocol"),
        (200, b'data: {"choices": "nope"}\n\n', "protocol"),
        (200, b'data: {"choices": [{"delta": {"content": 5}}]}\n\n', "protocol"),
        (200, b"data: [DONE]\n\n", "protocol"),  # no text at all
    ],
)
def test_bad_answers_fail_with_a_kind(status: int, body: bytes, kind: str) -> None:
    answer, events = _run(_sse(body, status))
    assert answer.failure is not None and answer.failure.kind == kind
    assert events[-1] == answer.failure


def test_answer_cap() -> None:
    wire = "".join(f"data: {_chunk('x' * 100)}\n\n" for _ in range(20)).encode()
    answer, _ = _run(_sse(wire), limits=Limits(max_answer_bytes=1000))
    assert answer.failure is not None and answer.failure.kind == "too_large"
    assert len(answer.text) <= 1000


def test_request_carries_key_system_prompt_and_params() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _sse(f"data: {_chunk('ok', 'stop')}\n\n".encode())(request)

    def endpoint(address: str) -> Endpoint:
        return Endpoint(
            base_url=f"http://{address}/v1/",
            model="gpt-x",
            api_key="sk-secret",
            max_tokens=77,
            temperature=0.2,
            system_prompt="Be brief.",
        )

    answer, _ = _run(handler, endpoint)
    assert answer.ok
    request = seen[0]
    assert request.method == "POST" and request.url.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret"
    body = json.loads(request.content)
    assert body == request_body(endpoint("x"), [{"role": "user", "content": "hi"}])
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["stream"] is True and body["max_tokens"] == 77 and body["temperature"] == 0.2


def test_pinned_address_is_called_with_the_endpoints_host_name() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _sse(f"data: {_chunk('ok', 'stop')}\n\n".encode())(request)

    def endpoint(address: str) -> Endpoint:
        # The name does not resolve: only the pinned address can reach the server.
        port = address.rsplit(":", 1)[1]
        return Endpoint(
            base_url=f"http://models.example.invalid:{port}/v1", model="m", connect_ip="127.0.0.1"
        )

    answer, _ = _run(handler, endpoint)
    assert answer.ok
    assert seen[0].headers["host"] == f"models.example.invalid:{seen[0].url.port}"


def test_redirects_are_not_followed() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/"})

    answer, _ = _run(handler)
    assert answer.failure is not None and answer.failure.kind == "status"
