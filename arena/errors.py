"""The arena's exception tree, and the one place it becomes an HTTP answer.

    ArenaError                      (400 unless a subclass says otherwise)
    ├── InvalidInput                422  a value a person can correct
    │   ├── ProbeFailed                   the endpoint did not pass its test request
    │   └── PromptRefused                 moderation refused the prompt (arena/moderation.py)
    │   └── ImageRefused                  an attached image that is not a usable picture
    ├── NotFound                    404
    │   ├── BattleNotFound
    │   └── ChatNotFound
    ├── NotAllowed                  403  the caller may not do this
    │   ├── NotYourBattle
    │   ├── NotYourChat
    │   └── InviteNotValid              a wrong, used or expired owner invite code
    ├── Unauthenticated             401
    ├── Conflict                    409  the state forbids it now
    │   ├── VoteAlreadyCast
    │   ├── BattleNotReady
    │   ├── BattleFailed
    │   ├── BattleClosed                past its vote window: no vote, no follow-up
    │   ├── BattleErased                deleted by its visitor: no vote, no follow-up
    │   └── NameTaken
    ├── BodyTooLarge                413  a request body over ARENA_MAX_BODY_BYTES
    ├── TooManyRequests             429  with Retry-After
    ├── NoModelsAvailable           503  fewer than two active models
    ├── ModerationUnavailable       503  the moderation endpoint is down and battles stop
    │   └── NoImageModelsAvailable        fewer than two that read images
    ├── DemoUnavailable                  the built-in demo endpoints cannot start (CLI only)
    ├── OutboundSetupError               the CA bundle or a proxy variable is unusable (at start)
    └── EndpointError                    an upstream endpoint misbehaved (never shown verbatim)
        ├── EndpointTimeout
        ├── EndpointStatusError
        ├── EndpointProtocolError
        ├── EndpointRefused              the URL points where endpoints may not live (SSRF guard)
        └── EndpointUnresolvable         the host name does not resolve (DNS)

Messages are written for the person who sees them: what was wrong and what to do instead.
Upstream failures inside a stream are data (an error event on one side), not exceptions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ArenaError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ArenaError):
    status_code = 422


class ProbeFailed(InvalidInput):
    pass


class PromptRefused(InvalidInput):
    pass


class ImageRefused(InvalidInput):
    """An attached image that cannot be used; the message names it and says what to send."""


class NotFound(ArenaError):
    status_code = 404


class BattleNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No battle with that id. Start a new battle with POST /api/battles.")


class ChatNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No chat with that id. Start a new chat with POST /api/chats.")


class NotAllowed(ArenaError):
    status_code = 403


class NotYourChat(NotAllowed):
    def __init__(self) -> None:
        super().__init__(
            "This chat belongs to another browser session; only the visitor who started it can "
            "continue it or rate its answers."
        )


class NotYourBattle(NotAllowed):
    def __init__(self) -> None:
        super().__init__(
            "This battle belongs to another browser session; only the visitor who started it "
            "can continue or vote on it."
        )


class InviteNotValid(NotAllowed):
    def __init__(self) -> None:
        super().__init__(
            "invite_code: this code is not valid for this email (mistyped, used already or "
            "expired); ask the operator for a new one"
        )


class Unauthenticated(ArenaError):
    status_code = 401


class Conflict(ArenaError):
    status_code = 409


class VoteAlreadyCast(Conflict):
    def __init__(self) -> None:
        super().__init__("This battle already has a vote; each battle takes exactly one.")


class BattleNotReady(Conflict):
    pass


class BattleFailed(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "One of the answers failed, so this battle cannot be voted on. Start a new battle."
        )


def _duration(window: timedelta) -> str:
    seconds = round(window.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


class BattleClosed(Conflict):
    def __init__(self, window: timedelta) -> None:
        super().__init__(
            f"This battle closed {_duration(window)} after it started and takes no more votes "
            "or follow-ups. Start a new battle."
        )


class BattleErased(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "This battle was deleted at its visitor's request: its texts are erased and it takes "
            "no vote or follow-up. Start a new battle."
        )


class NameTaken(Conflict):
    pass


class BodyTooLarge(ArenaError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is over this server's limit of {limit} bytes; send a smaller one."
        )


class TooManyRequests(ArenaError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class NoModelsAvailable(ArenaError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__(
            "Fewer than two models are active, so no battle can start. An operator can add "
            "models with `arena models add`."
        )


class ModerationUnavailable(ArenaError):
    """The moderation endpoint gave no verdict and the operator chose to stop battles then."""

    status_code = 503


class NoImageModelsAvailable(NoModelsAvailable):
    def __init__(self) -> None:
        ArenaError.__init__(
            self,
            "Fewer than two active models read images, so a battle with images cannot start; "
            "send the prompt without images.",
        )


class DemoUnavailable(ArenaError):
    pass


class OutboundSetupError(ArenaError):
    pass


class EndpointError(ArenaError):
    status_code = 502


class EndpointTimeout(EndpointError):
    pass


class EndpointStatusError(EndpointError):
    pass


class EndpointProtocolError(EndpointError):
    pass


class EndpointRefused(EndpointError):
    status_code = 422


class EndpointUnresolvable(EndpointError):
    status_code = 422


def _field(error: dict[str, object]) -> str:
    loc = error.get("loc", ())
    parts = loc if isinstance(loc, (list, tuple)) else ()
    location = [str(part) for part in parts if part not in ("body", "query", "path")]
    field = ".".join(location) or "request"
    # An unknown field's name is the client's own text: echoed, but not at any length.
    return field if len(field) <= 100 else field[:100] + "…"


def _characters(count: object) -> str:
    return "1 character" if count == 1 else f"{count} characters"


def _length_too_short(ctx: dict[str, object]) -> str:
    least = ctx.get("min_length")
    return "must not be empty" if least == 1 else f"must be at least {_characters(least)} long"


# pydantic's wording is written for programmers ("String should have at least 1 character",
# "Input should be a valid integer"); what follows the field's name here is written for the
# person filling in the form, who may not know what a string or an integer is.
_WORDING: dict[str, Callable[[dict[str, object]], str]] = {
    "missing": lambda ctx: "is required; fill it in",
    "extra_forbidden": lambda ctx: "not a field of this request; leave it out",
    "string_too_short": _length_too_short,
    "string_too_long": lambda ctx: f"must be at most {_characters(ctx.get('max_length'))} long",
    "string_type": lambda ctx: "must be text",
    "int_type": lambda ctx: "must be a whole number",
    "int_parsing": lambda ctx: "must be a whole number",
    "int_from_float": lambda ctx: "must be a whole number",
    "float_type": lambda ctx: "must be a number",
    "float_parsing": lambda ctx: "must be a number",
    "finite_number": lambda ctx: "must be a finite number",
    "bool_type": lambda ctx: "must be true or false",
    "bool_parsing": lambda ctx: "must be true or false",
    "greater_than_equal": lambda ctx: f"must be {ctx.get('ge')} or more",
    "greater_than": lambda ctx: f"must be more than {ctx.get('gt')}",
    "less_than_equal": lambda ctx: f"must be {ctx.get('le')} or less",
    "less_than": lambda ctx: f"must be less than {ctx.get('lt')}",
    "literal_error": lambda ctx: f"must be {ctx.get('expected')}",
    "enum": lambda ctx: f"must be {ctx.get('expected')}",
    "model_type": lambda ctx: "must be a JSON object with the fields this request takes",
    "model_attributes_type": lambda ctx: "must be a JSON object with the fields this request takes",
    "dict_type": lambda ctx: "must be a JSON object",
    "list_type": lambda ctx: "must be a list",
    "json_invalid": lambda ctx: f"the body is not valid JSON ({ctx.get('error', 'unreadable')})",
}


def _message(error: dict[str, object]) -> str:
    kind = str(error.get("type", ""))
    message = str(error.get("msg", "invalid value"))
    ctx = error.get("ctx")
    wording = _WORDING.get(kind)
    if wording is not None:
        return wording(ctx if isinstance(ctx, dict) else {})
    # Our own validators' sentences (ValueError) come prefixed with pydantic's category.
    return message.removeprefix("Value error, ")


def validation_message(exc: RequestValidationError) -> str:
    """The first few of a request's invalid values, each as `field: what is wrong`."""
    return "; ".join(f"{_field(e)}: {_message(e)}" for e in exc.errors()[:5])


def arena_error_response(exc: ArenaError) -> JSONResponse:
    headers = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


def unexpected_error_response(exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        {"detail": "Something went wrong on our side; it has been logged. Please try again."},
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ArenaError)
    async def _arena_error(_request: Request, exc: ArenaError) -> JSONResponse:
        return arena_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": _field(e), "message": _message(e)} for e in exc.errors()[:20]]
        return JSONResponse({"detail": validation_message(exc), "errors": fields}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)
