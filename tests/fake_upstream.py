"""A fake OpenAI-compatible upstream that really listens on loopback, honest or broken on demand.

The upstream model id picks the behaviour, with options after colons, e.g. "normal", "slow:0.3",
"counting" (a new answer on each request), "long:30" (30 paragraphs),
"hang", "error500", "error401:bad key", "page:500:TEXT", "midstream-close". A raw asyncio server
(not a framework) so that it can break the protocol the ways real servers do: stall after the
headers, send invalid UTF-8, drop the connection half-way through a chunked body, send a line or
a header that never ends, or a small gzip body that inflates to a huge one.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import re
import ssl
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image

from tests.servers import free_port

XSS_ANSWER = (
    "Look: <img src=x onerror=\"window.__pwned='img'\"> and "
    "<script>window.__pwned='script'</script> "
    "and [click](javascript:window.__pwned='link') and "
    "<svg onload=\"window.__pwned='svg'\"></svg> done."
)
MARKDOWN_ANSWER = (
    "# Title\n\nSome **bold** text and `inline code`.\n\n"
    "- one\n- two\n\n```python\nprint('hi')\n```\n"
)


JUDGE_CRITERIA = (
    "specificity",
    "domain_knowledge",
    "complexity",
    "problem_solving",
    "creativity",
    "technical_accuracy",
    "real_world",
)


def judge_verdict_for(request_text: str) -> dict[str, Any]:
    """A judge's verdict from markers in the battle's prompt: [hard] meets every criterion,
    [hard5] five of them; [math], [if], [creative], [refusal] set those labels."""
    start = request_text.find("<user_prompt>")
    end = request_text.find("</user_prompt>")
    prompt = request_text[start:end] if 0 <= start < end else ""
    met = 7 if "[hard]" in prompt else 5 if "[hard5]" in prompt else 1
    return {
        "criteria": {name: i < met for i, name in enumerate(JUDGE_CRITERIA)},
        "math": "[math]" in prompt,
        "instruction_following": "[if]" in prompt,
        "creative_writing": "[creative]" in prompt,
        "refusal": "[refusal]" in prompt,
    }


def answer_for(prompt: str) -> str:
    return f"You asked: {prompt[:200]}. Here is a careful and complete answer from this model."


def prompt_text(content: Any) -> str:
    """A message's text: the content itself, or its text parts when it is a list of parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return str(content)


def image_urls(body: dict[str, Any]) -> list[str]:
    """The image_url parts of every message of a request, in order."""
    found = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            found += [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
    return found


def vision_answer(body: dict[str, Any]) -> str:
    """What the fake "vision" model says: the size of each picture it was sent, as decoded."""
    seen = []
    for url in image_urls(body):
        head, _, payload = url.partition(",")
        picture = Image.open(io.BytesIO(base64.b64decode(payload)))
        seen.append(
            f"{head.removeprefix('data:').removesuffix(';base64')} {picture.width}x{picture.height}"
        )
    return f"I see {len(seen)} picture(s): {', '.join(seen) or 'none'}."


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    port: int
    received: list[Received] = field(default_factory=list)
    # Served over TLS: its base URL is https://localhost (the name in its certificate).
    tls: bool = False
    # The "held" model's answers wait for this after their first word (hold(), release()).
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        if self.tls:
            return f"https://localhost:{self.port}/v1"
        return f"http://127.0.0.1:{self.port}/v1"

    def hold(self) -> None:
        """Stop the "held" model's answers after their first word, until release()."""
        self.released.clear()

    def release(self) -> None:
        """Let the "held" model's answers go on past their first word."""
        self.released.set()

    def requests_for(self, model: str) -> list[Received]:
        return [r for r in self.received if r.body.get("model") == model]


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _sse_chunk(model: str, text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    event = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return _chunk(f"data: {json.dumps(event)}\n\n".encode())


# What a hostile endpoint sends again and again, as fast as the client reads it.
_ENDLESS_PIECE = b"A" * 65_536


@functools.cache
def gzip_bomb(size: int = 64 * 2**20) -> bytes:
    """A gzip body of about 64 KB that inflates to `size` bytes: an event line that never ends."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    packed = [packer.compress(b'data: {"x":"')]
    packed += [packer.compress(_ENDLESS_PIECE) for _ in range(size // len(_ENDLESS_PIECE))]
    packed.append(packer.flush())
    return b"".join(packed)


# The fake /moderations reads its verdict in the inputs: "FLAG-hate" flags the input in that
# category; the others break the answer for the whole request.
MOD_HANG = "MOD-HANG"
MOD_500 = "MOD-500"
MOD_GARBAGE = "MOD-GARBAGE"
MOD_WRONG_SHAPE = "MOD-WRONG-SHAPE"
MOD_HUGE = "MOD-HUGE"
_CATEGORIES = ("hate", "violence", "sexual", "self-harm/intent")
_FLAG = re.compile(r"FLAG-([a-z/-]+)")


def moderation_inputs(given: Any) -> list[Any]:
    """The inputs of a moderation request as OpenAI counts them: a string, a list of strings
    (one result each), or one multi-modal list of parts (one result)."""
    if isinstance(given, list) and given and all(isinstance(item, str) for item in given):
        return list(given)
    return [given]


def moderation_text(item: Any) -> str:
    """An input as the fake reads it: its text, and each image's bytes decoded from its URL."""
    if isinstance(item, str):
        return item
    pieces = []
    for part in item if isinstance(item, list) else []:
        if part.get("type") == "text":
            pieces.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = str(part.get("image_url", {}).get("url", ""))
            data = url.split(",", 1)[1] if url.startswith("data:") else url
            pieces.append(
                base64.b64decode(data).decode("latin-1") if url.startswith("data:") else data
            )
    return " ".join(pieces)


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


class _Handler:
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        request_line = await reader.readline()
        if not request_line:
            return False
        method, path, _ = request_line.decode().split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body_bytes = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            body = json.loads(body_bytes or b"{}")
        except ValueError:
            body = {}
        self.upstream.received.append(Received(path=path, headers=headers, body=body))
        if method == "POST" and path.endswith("/moderations"):
            return await self._moderate(writer, body)
        if method != "POST" or not path.endswith("/chat/completions"):
            await self._plain(writer, 404, "application/json", b'{"error": "not found"}')
            return True
        model = str(body.get("model", "normal"))
        name, *options = model.split(":")
        messages = body.get("messages") or [{"content": ""}]
        prompt = prompt_text(messages[-1].get("content", ""))
        return await self._behave(writer, name, options, model, prompt, body)

    async def _moderate(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> bool:
        """An OpenAI-compatible /moderations, led by what the inputs say (moderation_verdicts)."""
        inputs = moderation_inputs(body.get("input"))
        texts = [moderation_text(item) for item in inputs]
        seen = " ".join(texts)
        if MOD_HANG in seen:
            await asyncio.sleep(3600)
            return False
        if MOD_500 in seen:
            await self._plain(writer, 500, "application/json", b'{"error": "moderation broke"}')
            return True
        if MOD_GARBAGE in seen:
            await self._plain(writer, 200, "application/json", b"<html>not json</html>")
            return True
        if MOD_HUGE in seen:
            padding = "x" * 2_000_000
            payload = {"id": "modr-fake", "padding": padding, "results": [{"flagged": False}]}
            await self._plain(writer, 200, "application/json", json.dumps(payload).encode())
            return True
        if MOD_WRONG_SHAPE in seen:
            payload = {"id": "modr-fake", "results": [{"flagged": "maybe"}]}
            await self._plain(writer, 200, "application/json", json.dumps(payload).encode())
            return True
        results = []
        for text in texts:
            flagged = _FLAG.findall(text)
            results.append(
                {
                    "flagged": bool(flagged),
                    "categories": {category: category in flagged for category in _CATEGORIES},
                    "category_scores": {
                        category: 0.9 if category in flagged else 0.01 for category in _CATEGORIES
                    },
                }
            )
        payload = {"id": "modr-fake", "model": body.get("model", ""), "results": results}
        await self._plain(writer, 200, "application/json", json.dumps(payload).encode())
        return True

    async def _plain(
        self, writer: asyncio.StreamWriter, status: int, content_type: str, payload: bytes
    ) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    async def _stream_head(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n"
        )
        await writer.drain()

    async def _stream_text(
        self,
        writer: asyncio.StreamWriter,
        model: str,
        text: str,
        delay: float,
        *,
        held: threading.Event | None = None,
    ) -> None:
        await self._stream_head(writer)
        for n, word in enumerate(_words(text)):
            if delay:
                await asyncio.sleep(delay)
            if held is not None and n == 1:
                await asyncio.get_running_loop().run_in_executor(None, held.wait, 300)
            writer.write(_sse_chunk(model, word))
            await writer.drain()
        writer.write(_sse_chunk(model, None, "stop"))
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async def _behave(
        self,
        writer: asyncio.StreamWriter,
        name: str,
        options: list[str],
        model: str,
        prompt: str,
        body: dict[str, Any],
    ) -> bool:
        try:
            option = float(options[0]) if options else None
        except ValueError:  # "says:TEXT" carries text, not a number
            option = None
        if name == "normal":
            await self._stream_text(writer, model, answer_for(prompt), option or 0.0)
        elif name == "slow":
            await self._stream_text(writer, model, answer_for(prompt), option or 0.15)
        elif name == "held":
            # The first word, then the rest once the test calls release() (for at most 300 s)
            held = self.upstream.released
            await self._stream_text(writer, model, answer_for(prompt), 0.0, held=held)
        elif name == "vision":
            await self._stream_text(writer, model, vision_answer(body), 0.0)
        elif name == "text-only":
            # A model that reads no images: 400 to a request with any, as OpenAI's API answers
            if image_urls(body):
                error = {"error": {"message": "image input is not supported by this model"}}
                await self._plain(writer, 400, "application/json", json.dumps(error).encode())
                return True
            await self._stream_text(writer, model, answer_for(prompt), 0.0)
        elif name == "long":
            # "long:PARAGRAPHS": an answer of that many paragraphs, pages long on a phone
            count = int(option or 30)
            text = "\n\n".join(
                f"Paragraph {n + 1}: rivers carry water, sand and stories to the sea."
                for n in range(count)
            )
            await self._stream_text(writer, model, text, 0.0)
        elif name == "counting":
            # "counting:DELAY": a different answer each time the same model is asked
            asked = len(self.upstream.requests_for(model))
            text = f"Answer number {asked} to: {prompt[:200]}. Said slowly, word by word."
            await self._stream_text(writer, model, text, option or 0.0)
        elif name in ("judge", "judge-fenced"):
            # "judge:0.5" answers after half a second; judge-fenced wraps the JSON in prose
            verdict = json.dumps(judge_verdict_for(prompt))
            if name == "judge-fenced":
                verdict = f"Here are the labels:\n```json\n{verdict}\n```\nHope this helps."
            if option:
                await asyncio.sleep(option)
            await self._stream_text(writer, model, verdict, 0.0)
        elif name == "xss":
            await self._stream_text(writer, model, XSS_ANSWER, 0.0)
        elif name == "markdown":
            await self._stream_text(writer, model, MARKDOWN_ANSWER, 0.0)
        elif name == "says":
            # "says:TEXT" answers TEXT (for identity-leak tests); colons after the first are kept
            await self._stream_text(writer, model, ":".join(options) or "hello", 0.0)
        elif name == "hang":
            await asyncio.sleep(3600)
        elif name == "hang-after-headers":
            await self._stream_head(writer)
            await asyncio.sleep(3600)
        elif name == "hang-midstream":
            await self._stream_head(writer)
            writer.write(_sse_chunk(model, "Starting "))
            await writer.drain()
            await asyncio.sleep(3600)
        elif name == "drip":
            await self._stream_head(writer)
            for byte in b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n':
                writer.write(_chunk(bytes([byte])))
                await writer.drain()
                await asyncio.sleep(option or 1.0)
        elif name.startswith("error"):
            # "error401:bad key" answers 401 with that message in an OpenAI-style error
            status = int(name.removeprefix("error") or 500)
            error = {"error": {"message": ":".join(options) or "upstream broke"}}
            await self._plain(writer, status, "application/json", json.dumps(error).encode())
            return True
        elif name == "page":
            # "page:500:TEXT" answers an HTML page with TEXT in it, as a web server would
            status = int(options[0]) if options else 200
            page = f"<html><body><h1>Internal</h1><p>{':'.join(options[1:])}</p></body></html>"
            await self._plain(writer, status, "text/html", page.encode())
            return True
        elif name == "html":
            await self._plain(
                writer, 200, "text/html", b"<html><body>Welcome to nginx</body></html>"
            )
            return True
        elif name == "json":
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer_for(prompt)},
                        "finish_reason": "stop",
                    }
                ],
            }
            await self._plain(writer, 200, "application/json", json.dumps(payload).encode())
            return True
        elif name == "garbage":
            await self._stream_head(writer)
            writer.write(_chunk(b"data: this is not json at all\n\n"))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif name == "invalid-utf8":
            await self._stream_head(writer)
            bad = b'data: {"choices": [{"delta": {"content": "\xff\xfe\xfa"}}]}\n\n'
            writer.write(_chunk(bad))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif name == "midstream-close":
            await self._stream_head(writer)
            for word in _words(answer_for(prompt))[:3]:
                writer.write(_sse_chunk(model, word))
            await writer.drain()
            writer.transport.abort()
            return False
        elif name in ("endless-line", "endless-first-line"):
            # One event line that never ends, after a first token or not: chunks without a newline
            # until the client goes away.
            await self._stream_head(writer)
            if name == "endless-line":
                writer.write(_sse_chunk(model, "Starting "))
            writer.write(_chunk(b'data: {"x":"'))
            while True:
                writer.write(_chunk(_ENDLESS_PIECE))
                await writer.drain()
                await asyncio.sleep(0)  # a socket that keeps up never makes drain wait
        elif name == "endless-header":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Padding: ")
            while True:
                writer.write(_ENDLESS_PIECE)
                await writer.drain()
                await asyncio.sleep(0)
        elif name == "gzip-bomb":
            bomb = gzip_bomb()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(bomb), bomb)
            )
            await writer.drain()
            return True
        elif name == "huge":
            size = int(option or 10_000_000)
            await self._stream_head(writer)
            piece = "A" * 4000
            for _ in range(size // len(piece)):
                writer.write(_sse_chunk(model, piece))
                await writer.drain()
            writer.write(_sse_chunk(model, None, "stop") + b"0\r\n\r\n")
            await writer.drain()
        else:
            await self._plain(writer, 404, "application/json", b'{"error": "unknown fake model"}')
        return True


def start_fake_upstream(
    tls: ssl.SSLContext | None = None,
) -> tuple[FakeUpstream, threading.Thread, asyncio.AbstractEventLoop]:
    """The fake upstream in a thread of its own; over TLS with `tls` (a server context)."""
    upstream = FakeUpstream(port=free_port(), tls=tls is not None)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(
            asyncio.start_server(_Handler(upstream), "127.0.0.1", upstream.port, ssl=tls)
        )
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise TimeoutError("the fake upstream did not start")
    return upstream, thread, loop


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream, thread, loop = start_fake_upstream()
    yield upstream
    upstream.release()  # no held answer keeps a thread waiting past the test
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
