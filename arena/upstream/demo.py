"""The built-in demo endpoints: a small OpenAI-compatible server with deterministic demo models.

`arena demo-upstream` runs it alone; `arena serve --demo` (and so `make run`) starts it in the
background and registers its models like any other endpoint, so a newcomer can battle at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from arena.errors import DemoUnavailable
from arena.judge.demo_judge import DEMO_JUDGE_MODEL, demo_judge_answer
from arena.upstream import demo_answers
from arena.upstream.demo_answers import Composer, Conversation, Picture

DEMO_ORGANIZATION = "arena demo"
DEFAULT_SECONDS_PER_WORD = 0.03


@dataclass(frozen=True)
class DemoModel:
    """One demo model: its public name (also its model id on the demo server) and its style."""

    name: str
    description: str
    compose: Composer
    # Relative speed: the pause between words is seconds_per_word times this.
    pace: float
    # Pauses before the first word, as a real model spends reading the prompt.
    first_token_words: int
    # Reads pictures in prompts (registered with image support)
    supports_images: bool = False

    def answer(self, conversation: Conversation) -> str:
        # A demo answer never names a demo model (a prompt may quote one): that would reveal
        # identities before the vote.
        return _DEMO_NAMES.sub("this assistant", self.compose(conversation))


DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel(
        name="demo-terse",
        description="Built-in demo model: answers in a line or two. Deterministic, no weights.",
        compose=demo_answers.terse,
        pace=0.6,
        first_token_words=2,
    ),
    DemoModel(
        name="demo-thorough",
        description=(
            "Built-in demo model: careful Markdown answers with lists, and a code block when "
            "asked about code. Deterministic, no weights."
        ),
        compose=demo_answers.thorough,
        pace=1.0,
        first_token_words=8,
    ),
    DemoModel(
        name="demo-whimsical",
        description=(
            "Built-in demo model: chatty, sloppy and sometimes wrong. Deterministic, no weights."
        ),
        compose=demo_answers.whimsical,
        pace=0.8,
        first_token_words=4,
    ),
    DemoModel(
        name="demo-plain",
        description="Built-in demo model: one sensible plain paragraph. Deterministic, no weights.",
        compose=demo_answers.plain,
        pace=0.9,
        first_token_words=5,
        supports_images=True,
    ),
    DemoModel(
        name="demo-vision",
        description=(
            "Built-in demo model: describes attached pictures (size, shape, main colour). "
            "Deterministic, no weights."
        ),
        compose=demo_answers.vision,
        pace=0.8,
        first_token_words=6,
        supports_images=True,
    ),
)
# Not a competitor: the judge `arena serve --demo` names when the operator has named none.
DEMO_JUDGE = DemoModel(
    name=DEMO_JUDGE_MODEL,
    description="Built-in demo judge: keyword rules, not a language model.",
    compose=lambda conversation: demo_judge_answer(conversation.prompt),
    pace=0.0,
    first_token_words=0,
)
_BY_NAME = {model.name: model for model in DEMO_MODELS}
_DEMO_NAMES = re.compile(
    "|".join(re.escape(n) for n in (*_BY_NAME, DEMO_ORGANIZATION)), re.IGNORECASE
)


# ---------------------------------------------------------------- the OpenAI-compatible server


class _ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    image_url: _ImageUrl | None = None


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""

    @property
    def image_urls(self) -> list[str]:
        if not isinstance(self.content, list):
            return []
        return [p.image_url.url for p in self.content if p.type == "image_url" and p.image_url]


class _ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[_ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)

    def conversation(self) -> Conversation:
        users = [m for m in self.messages if m.role == "user"]
        prompts = [m.text for m in users] or [""]
        urls = users[-1].image_urls if users else []
        return Conversation(
            prompt=prompts[-1],
            earlier_prompts=tuple(prompts[:-1]),
            pictures=tuple(_look_at(url) for url in urls[:_MAX_PICTURES]),
        )

    @property
    def token_cap(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


# Pictures the demo looks at per prompt, and the largest it decodes (the arena's own checks
# come first; the demo server also serves other clients on loopback).
_MAX_PICTURES = 8
_MAX_PICTURE_PIXELS = 25_000_000
# Named colours the demo tells a picture's average colour by: the nearest one wins.
_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "orange": (230, 130, 30),
    "yellow": (230, 210, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 200),
    "purple": (130, 50, 160),
    "pink": (230, 130, 170),
    "brown": (120, 80, 40),
    "grey": (128, 128, 128),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}


def _look_at(url: str) -> Picture:
    """Size and main colour of a data-URL picture; an unreadable one is described as such."""
    unreadable = Picture(0, 0, "unreadable", "an")
    head, _, payload = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        return unreadable
    try:
        raw = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(raw), formats=("PNG", "JPEG", "WEBP", "GIF")) as picture:
            if picture.width * picture.height > _MAX_PICTURE_PIXELS:
                return unreadable
            average = picture.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
            width, height = picture.size
    except (ValueError, OSError, SyntaxError, Image.DecompressionBombError):
        return unreadable
    if not isinstance(average, tuple):
        return unreadable
    red, green, blue = (int(c) for c in average[:3])
    colour = min(
        _COLOURS,
        key=lambda name: sum(
            (a - b) ** 2 for a, b in zip(_COLOURS[name], (red, green, blue), strict=True)
        ),
    )
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    brightness = "dark" if luminance < 85 else "bright" if luminance > 170 else "mid-toned"
    return Picture(width, height, colour, brightness)


def _openai_error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status_code=status,
    )


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    return f"{location or 'body'}: {first.get('msg', 'invalid value')}", location or None


def _words(text: str) -> list[str]:
    """Word-sized pieces that join back to exactly `text` (newlines and indentation included)."""
    return re.findall(r"\s*\S+|\s+$", text) or [text]


def _chunk(
    completion_id: str, created: int, model: str, delta: dict[str, str], finish: str | None
) -> str:
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


@dataclass(frozen=True)
class _Reply:
    model: DemoModel
    completion_id: str
    created: int
    pieces: list[str]
    finish_reason: str
    prompt_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def _reply(model: DemoModel, body: _ChatRequest) -> _Reply:
    conversation = body.conversation()
    pieces = _words(model.answer(conversation))
    finish_reason = "stop"
    cap = body.token_cap
    if cap is not None and len(pieces) > cap:
        pieces, finish_reason = pieces[:cap], "length"
    seed = "\x1f".join((model.name, *conversation.earlier_prompts, conversation.prompt))
    return _Reply(
        model=model,
        completion_id="chatcmpl-demo-" + hashlib.sha256(seed.encode()).hexdigest()[:24],
        created=int(time.time()),
        pieces=pieces,
        finish_reason=finish_reason,
        prompt_tokens=sum(len(m.text.split()) for m in body.messages),
    )


async def _stream(reply: _Reply, seconds_per_word: float) -> AsyncIterator[str]:
    pause = seconds_per_word * reply.model.pace
    name = reply.model.name
    yield _chunk(
        reply.completion_id, reply.created, name, {"role": "assistant", "content": ""}, None
    )
    if pause:
        await asyncio.sleep(pause * reply.model.first_token_words)
    for index, piece in enumerate(reply.pieces):
        if index and pause:
            await asyncio.sleep(pause)
        yield _chunk(reply.completion_id, reply.created, name, {"content": piece}, None)
    yield _chunk(reply.completion_id, reply.created, name, {}, reply.finish_reason)
    yield "data: [DONE]\n\n"


def _completion(reply: _Reply) -> dict[str, Any]:
    return {
        "id": reply.completion_id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(reply.pieces)},
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": reply.usage,
    }


def _model_card(model: DemoModel) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": 0, "owned_by": DEMO_ORGANIZATION}


def create_demo_app(seconds_per_word: float = DEFAULT_SECONDS_PER_WORD) -> FastAPI:
    """The demo server; `seconds_per_word` sets the streaming pace (0 streams at once)."""
    if seconds_per_word < 0:
        raise ValueError(f"seconds_per_word must be 0 or more, got {seconds_per_word}")
    app = FastAPI(
        title="arena demo endpoints",
        summary="Deterministic demo models behind an OpenAI-compatible API.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _openai_error(exc.status_code, str(exc.detail), "not_found")

    @app.get("/v1/models")
    async def list_models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [_model_card(m) for m in DEMO_MODELS]})

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> JSONResponse:
        model = _BY_NAME.get(model_id)
        if model is None:
            return _unknown_model(model_id)
        return JSONResponse(_model_card(model))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            raw = json.loads(await request.body())
        except ValueError as exc:
            return _openai_error(400, f"The request body is not valid JSON: {exc}", "invalid_json")
        try:
            body = _ChatRequest.model_validate(raw)
        except ValidationError as exc:
            message, param = _validation_message(exc)
            return _openai_error(400, message, "invalid_request", param)
        model = DEMO_JUDGE if body.model == DEMO_JUDGE.name else _BY_NAME.get(body.model)
        if model is None:
            return _unknown_model(body.model)
        reply = _reply(model, body)
        if not body.stream:
            return JSONResponse(_completion(reply))
        return StreamingResponse(
            _stream(reply, seconds_per_word),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    return app


def _unknown_model(model_id: str) -> JSONResponse:
    names = ", ".join(m.name for m in DEMO_MODELS)
    return _openai_error(
        404,
        f"The model {model_id[:100]!r} does not exist on the demo server; it serves {names}.",
        "model_not_found",
        "model",
    )


# ---------------------------------------------------------------- running it beside the arena


class DemoServer:
    """The demo app under uvicorn in a daemon thread on 127.0.0.1, for the life of the process."""

    def __init__(self, port: int, seconds_per_word: float = DEFAULT_SECONDS_PER_WORD) -> None:
        self.port = port
        config = uvicorn.Config(
            create_demo_app(seconds_per_word),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="demo-upstream", daemon=True)

    @property
    def base_url(self) -> str:
        return demo_base_url(self.port)

    def start(self, timeout: float = 20.0) -> DemoServer:
        """Start serving and return once the port listens."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise DemoUnavailable(
                    f"The demo endpoints could not listen on 127.0.0.1:{self.port}; "
                    "set ARENA_DEMO_PORT to a free port."
                )
            if time.monotonic() > deadline:
                raise DemoUnavailable(
                    f"The demo endpoints did not start within {timeout:.0f} s on port {self.port}."
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def demo_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def demo_already_serving(port: int) -> bool:
    """True if our demo server answers on the port, False if nothing listens there.

    Raises DemoUnavailable when something else holds the port.
    """
    try:
        response = httpx.get(f"{demo_base_url(port)}/models", timeout=3.0, trust_env=False)
    except httpx.ConnectError:
        return False
    except httpx.HTTPError:
        response = None
    try:
        listed = {card["id"] for card in response.json()["data"]} if response else set()
    except (ValueError, KeyError, TypeError):
        listed = set()
    if listed >= set(_BY_NAME):
        return True
    raise DemoUnavailable(
        f"Port {port} is taken by something other than the arena's demo endpoints; "
        "set ARENA_DEMO_PORT to a free port."
    )
