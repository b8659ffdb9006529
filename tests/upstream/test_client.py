"""Parsing upstream answers: SSE framing, JSON answers, error shapes, caps and address pinning."""

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


def _chunk(text: str | None, finish: str | None = None) -> str:
    delta = {"content": text} if text is not None else {}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _run(
    handler: Callable[[httpx.Request], httpx.Response],
    endpoint: Endpoint | None = None,
    limits: Limits | None = None,
) -> tuple[Answer, list[UpstreamEvent]]:
    events: list[UpstreamEvent] = []

    async def go() -> Answer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await stream_chat(
                client,
                endpoint or Endpoint(base_url="http://upstream.test/v1", model="m"),
                [{"role": "user", "content": "hi"}],
                limits or Limits(),
                events.append,
            )

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

    endpoint = Endpoint(
        base_url="https://api.example.test/v1/",
        model="gpt-x",
        api_key="sk-secret",
        max_tokens=77,
        temperature=0.2,
        system_prompt="Be brief.",
    )
    answer, _ = _run(handler, endpoint)
    assert answer.ok
    request = seen[0]
    assert str(request.url) == "https://api.example.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret"
    body = json.loads(request.content)
    assert body == request_body(endpoint, [{"role": "user", "content": "hi"}])
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["stream"] is True and body["max_tokens"] == 77 and body["temperature"] == 0.2


def test_pinned_address_keeps_host_and_sni() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _sse(f"data: {_chunk('ok', 'stop')}\n\n".encode())(request)

    endpoint = Endpoint(
        base_url="https://models.example.test:8443/v1", model="m", connect_ip="203.0.113.7"
    )
    _run(handler, endpoint)
    request = seen[0]
    assert request.url.host == "203.0.113.7" and request.url.port == 8443
    assert request.headers["host"] == "models.example.test:8443"
    assert request.extensions["sni_hostname"] == "models.example.test"


def test_redirects_are_not_followed() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/"})

    answer, _ = _run(handler)
    assert answer.failure is not None and answer.failure.kind == "status"
