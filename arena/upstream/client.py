"""The OpenAI-compatible chat client: one streamed answer from one endpoint, never raising."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from arena.upstream.http import (
    Post,
    Response,
    Target,
    UpstreamClient,
    UpstreamHTTPError,
    drop_history,
)
from arena.upstream.sse import SseData, SseError

log = logging.getLogger(__name__)

# "certificate": the endpoint spoke TLS with a certificate the arena does not trust.
FailureKind = Literal["connect", "timeout", "status", "protocol", "too_large", "certificate"]

# One encoder for every request: json.dumps with options builds a new one on each call.
_to_json = json.JSONEncoder(ensure_ascii=False).encode
# A streamed body, comments, keep-alives and each event's JSON around its text included, may
# be this many times the answer's cap; garbage that never produces text is bounded so.
_BODY_BYTES_PER_ANSWER_BYTE = 40
# One event, or a JSON body, may carry the whole answer JSON-escaped: a control character takes
# six bytes (\u0001), and the object around the text takes some more.
_ESCAPED_BYTES_PER_ANSWER_BYTE = 6
_EVENT_OVERHEAD_BYTES = 65_536
# The idle deadline is moved ahead by this factor of the idle timeout, so not on every token.
_IDLE_SLACK = 17 / 16
# How long the end of the body may take to follow [DONE] before the connection is dropped
_DRAIN_SECONDS = 0.25


@dataclass(frozen=True)
class Endpoint:
    """What it takes to call one model; `connect_ip` pins the connection to a checked address."""

    base_url: str
    model: str
    api_key: str | None = None
    max_tokens: int = 1024
    temperature: float = 0.7
    system_prompt: str = ""
    connect_ip: str | None = None


@dataclass(frozen=True)
class Limits:
    connect: float = 5.0
    first_token: float = 30.0
    idle: float = 20.0
    total: float = 180.0
    max_answer_bytes: int = 65_536


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str


@dataclass(frozen=True)
class Failed:
    kind: FailureKind
    detail: str  # for the operator's log only


UpstreamEvent = Delta | Finished | Failed


@dataclass
class Answer:
    """The whole of one side's answer once the stream is over."""

    text: str = ""
    finish_reason: str | None = None
    failure: Failed | None = None
    first_token_ms: float | None = None
    duration_ms: float = 0.0
    chunks: int = 0
    chunk_texts: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.failure is None


class _UpstreamFailure(Exception):
    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: FailureKind = kind
        self.detail = detail


# One OpenAI chat message: {"role", "content"}, the content a text or a list of parts (text and
# image_url parts when the prompt carries images).
ChatMessage = dict[str, Any]


def request_body(endpoint: Endpoint, messages: list[ChatMessage]) -> dict[str, Any]:
    conversation = list(messages)
    if endpoint.system_prompt:
        conversation.insert(0, {"role": "system", "content": endpoint.system_prompt})
    return {
        "model": endpoint.model,
        "messages": conversation,
        "stream": True,
        "max_tokens": endpoint.max_tokens,
        "temperature": endpoint.temperature,
    }


@functools.lru_cache(maxsize=1024)
def _target(base_url: str, connect_ip: str | None) -> Target:
    # Cached: parsing the URL (httpx, pure Python) cost more than sending the request.
    url = httpx.URL(base_url.rstrip("/") + "/chat/completions")
    return Target(
        scheme=url.scheme,
        host=url.host,
        port=url.port or (443 if url.scheme == "https" else 80),
        # Connect to the address the SSRF guard checked, while TLS and Host still name the host.
        connect_host=connect_ip or url.host,
        path=url.raw_path.decode("ascii"),
    )


def _request_target(endpoint: Endpoint) -> tuple[Target, dict[str, str]]:
    # An uncompressed body is parsed as it comes off the wire; compressing a stream of small
    # events saves little anyway.
    headers = {
        "Accept": "text/event-stream, application/json",
        "Accept-Encoding": "identity",
        "Content-Type": "application/json",
        "User-Agent": "arena",
    }
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    return _target(endpoint.base_url, endpoint.connect_ip), headers


def _choice(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _UpstreamFailure("protocol", f"expected a JSON object, got {type(payload).__name__}")
    if "error" in payload and not payload.get("choices"):
        raise _UpstreamFailure(
            "status", f"upstream error object: {_to_json(payload['error'])}"[:2000]
        )
    choices = payload.get("choices")
    if not isinstance(choices, list):
        raise _UpstreamFailure("protocol", "no 'choices' list in the upstream answer")
    if not choices:
        return {}
    first = choices[0]
    if not isinstance(first, dict):
        raise _UpstreamFailure("protocol", "a choice is not a JSON object")
    return first


def _text_of(container: Any) -> str:
    if container is None:
        return ""
    if not isinstance(container, dict):
        raise _UpstreamFailure("protocol", "delta/message is not a JSON object")
    content = container.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise _UpstreamFailure("protocol", "content is not a string")
    return content


def stream_chat(
    client: UpstreamClient,
    endpoint: Endpoint,
    messages: list[ChatMessage],
    limits: Limits,
    emit: Callable[[UpstreamEvent], None],
) -> Coroutine[Any, Any, Answer]:
    """Call the endpoint and `emit` each piece as it arrives; failures end as one `Failed` event.

    The request is written before this returns when a kept-alive connection to the endpoint is
    idle (a task would start it one turn of the event loop later); the rest runs when the
    coroutine returned is awaited, which it must be, soon. The deadline is a single timer,
    moved after every chunk: the first-token timeout until the first text, then the idle
    timeout, never past the total timeout.
    """
    started = asyncio.get_running_loop().time()
    target, headers = _request_target(endpoint)
    body = _to_json(request_body(endpoint, messages)).encode("utf-8")
    return _answer(client.post(target, headers, body), endpoint, limits, emit, started)


async def _answer(
    post: Post,
    endpoint: Endpoint,
    limits: Limits,
    emit: Callable[[UpstreamEvent], None],
    started: float,
) -> Answer:
    loop = asyncio.get_running_loop()
    answer = Answer()
    total_deadline = started + limits.total
    phase = "first_token"
    answer_bytes = 0

    def on_text(text: str, deadline: asyncio.Timeout) -> None:
        nonlocal phase, answer_bytes
        if not text:
            return
        answer_bytes += len(text.encode("utf-8"))
        if answer_bytes > limits.max_answer_bytes:
            raise _UpstreamFailure("too_large", f"answer exceeded {limits.max_answer_bytes} bytes")
        if answer.first_token_ms is None:
            answer.first_token_ms = (loop.time() - started) * 1000
            phase = "idle"
        answer.chunks += 1
        answer.chunk_texts.append(text)
        emit(Delta(text))
        # Moved only when less than the idle timeout is left (or, after the first token, much
        # more), and then a sixteenth further: a timer moved on every token cost more than the
        # token's own parsing. It fires after 1 to 17/16 idle timeouts without a token.
        now = loop.time()
        soonest = min(now + limits.idle, total_deadline)
        when = deadline.when()
        if when is None or not soonest <= when <= soonest + limits.idle * (_IDLE_SLACK - 1):
            deadline.reschedule(min(now + limits.idle * _IDLE_SLACK, total_deadline))

    try:
        first_deadline = min(started + limits.first_token, total_deadline)
        async with asyncio.timeout_at(first_deadline) as deadline:
            response = await post.response(connect_timeout=limits.connect)
            try:
                await _read_answer(response, answer, limits, on_text, deadline)
            finally:
                response.close()
    except (_UpstreamFailure, SseError) as failure:
        answer.failure = Failed(failure.kind, failure.detail)
        drop_history(failure)  # raised again from the response's future, it has a traceback again
    except TimeoutError:
        if loop.time() >= total_deadline - 0.001:
            detail = f"no complete answer within the total timeout of {limits.total}s"
        elif phase == "first_token":
            detail = f"no first token within {limits.first_token}s"
        else:
            detail = f"no new token within the idle timeout of {limits.idle}s"
        answer.failure = Failed("timeout", detail)
    except UpstreamHTTPError as exc:
        answer.failure = _transport_failure(exc)
        drop_history(exc)
    answer.duration_ms = (loop.time() - started) * 1000
    if answer.failure is not None and endpoint.api_key:
        # Some servers echo the key they refused; it must reach neither the log nor the database.
        detail = answer.failure.detail.replace(endpoint.api_key, "[the endpoint's API key]")
        answer.failure = Failed(answer.failure.kind, detail)
    if answer.failure is not None:
        log.warning(
            "upstream %s (model %s) failed: %s: %s",
            endpoint.base_url,
            endpoint.model,
            answer.failure.kind,
            answer.failure.detail,
        )
        emit(answer.failure)
    else:
        emit(Finished(answer.finish_reason or "stop"))
    answer.text = "".join(answer.chunk_texts)
    answer.chunk_texts = []
    return answer


def _transport_failure(exc: UpstreamHTTPError) -> Failed:
    """Before the request reached a server the endpoint could not be reached (or not in time);
    after, the connection broke or the server spoke no HTTP."""
    if exc.timed_out:
        return Failed("timeout", str(exc))
    if exc.certificate:
        return Failed("certificate", str(exc))
    if not exc.connected:
        return Failed("connect", str(exc))
    return Failed("protocol", f"connection broke: {exc}")


async def _read_answer(
    response: Response,
    answer: Answer,
    limits: Limits,
    on_text: Callable[[str, asyncio.Timeout], None],
    deadline: asyncio.Timeout,
) -> None:
    if response.status == 407:
        # Only a proxy asks for proxy credentials (an http:// endpoint's request goes through
        # one as is): the operator's to fix, and no answer of the endpoint's.
        raise UpstreamHTTPError(
            "the proxy asks for credentials (HTTP 407); give them in the proxy URL, "
            "http://user:password@proxy:port",
            connected=False,
        )
    if response.status >= 300:
        raw, _more = await response.read(4096)
        body = raw.decode("utf-8", "replace")
        raise _UpstreamFailure("status", f"HTTP {response.status}: {body[:2000]}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    max_event_bytes = (
        limits.max_answer_bytes * _ESCAPED_BYTES_PER_ANSWER_BYTE + _EVENT_OVERHEAD_BYTES
    )
    if content_type == "application/json":
        raw, more = await response.read(max_event_bytes)
        if more:
            raise _UpstreamFailure("too_large", f"answer body exceeded {max_event_bytes} bytes")
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _UpstreamFailure("protocol", f"JSON answer did not parse: {exc}") from None
        choice = _choice(payload)
        on_text(_text_of(choice.get("message")), deadline)
        answer.finish_reason = str(choice.get("finish_reason") or "stop")
        return
    if content_type != "text/event-stream":
        raise _UpstreamFailure(
            "protocol", f"expected text/event-stream or application/json, got {content_type!r}"
        )
    done = asyncio.get_running_loop().create_future()

    def on_data(data: str) -> None:
        # Runs in the connection's read callback, as each event arrives.
        if done.done():
            return
        if data.strip() == "[DONE]":
            done.set_result(None)
            return
        try:
            payload = json.loads(data)
        except ValueError:
            raise _UpstreamFailure("protocol", f"event is not JSON: {data[:200]!r}") from None
        choice = _choice(payload)
        on_text(_text_of(choice.get("delta")), deadline)
        if choice.get("finish_reason"):
            answer.finish_reason = str(choice["finish_reason"])

    events = SseData(
        on_data,
        max_event_bytes=max_event_bytes,
        max_body_bytes=limits.max_answer_bytes * _BODY_BYTES_PER_ANSWER_BYTE,
    )
    response.stream(events.feed)
    ended = response.ended
    await asyncio.wait([ended, done], return_when=asyncio.FIRST_COMPLETED)
    if done.done():
        # What follows [DONE] is normally only the end of the body: a response closed before its
        # end takes its connection with it, and the next call to the endpoint would pay a new
        # TCP (and TLS) handshake. A server that keeps the body open past a short grace loses
        # it instead.
        await asyncio.wait([ended], timeout=_DRAIN_SECONDS)
    else:
        broken = ended.exception()
        if broken is not None:
            raise broken
        events.end()
        if not done.done() and answer.finish_reason is None:
            # Closed without [DONE]: fine if a finish reason came, a broken stream if not.
            raise _UpstreamFailure("protocol", "stream ended before the answer finished")
    if answer.chunks == 0 and not answer.text:
        raise _UpstreamFailure("protocol", "the endpoint answered with no text")
