"""How the arena's errors appear in the OpenAPI document, so clients and fuzzers know them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    """Every error answer: a message a person can act on."""

    detail: str


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ValidationErrorOut(BaseModel):
    """A request that does not validate: the summary, and each field at fault when known."""

    detail: str
    errors: list[FieldErrorOut] | None = None


def _error(description: str, model: type[BaseModel] = ErrorOut) -> dict[str, Any]:
    return {"model": model, "description": description}


# Declared for every route: any request may meet them (a bad body, a rate limit, a database
# that is down), and an error that is in the document is one a client can handle on purpose.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The request cannot be carried out as sent"),
    401: _error("Missing or wrong token"),
    403: _error("The caller may not do this"),
    404: _error("No such resource"),
    405: _error("Method not allowed on this path"),
    409: _error("The resource's state forbids this now"),
    413: _error("The request body is over the server's size limit"),
    422: _error("A value is invalid; the message names the field", ValidationErrorOut),
    429: {
        **_error("Over a rate limit"),
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "integer"},
            }
        },
    },
    500: _error("An unexpected error, logged for the operator"),
    502: _error("An upstream endpoint misbehaved"),
    503: _error("Not available now (e.g. fewer than two active models)"),
}
