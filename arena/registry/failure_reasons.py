"""What an owner is told about an endpoint's failure: enough to fix a real endpoint, too little
to map a network with.

An owner chooses where the arena connects: any address when private endpoints are allowed (the
demo allows them), and a public host name can later resolve elsewhere. So a closed port (the
connection refused), a silent one (a timeout), a listener that is no HTTP server and a web page
that is no chat completion all read alike, and a body is never repeated: it could be an internal
page. What a real HTTP server answered is shown: its status code, with the message of an
OpenAI-style JSON error (`{"error": {"message": ...}}`, or vLLM's `{"object": "error", "message":
...}`), bounded and without control characters; a proxy's message that wraps another JSON error
(LiteLLM's do) is shown as the innermost message, not as the JSON. An error that names the model
(OpenAI's code `model_not_found`, param `model`, or a message saying the model id is unknown) is
put on the model id, not on base_url. The whole failure is in the operator's log (the chat client
logs every one).

A certificate the arena does not trust is named as such, with OpenSSL's reason (an expired
certificate, another host's, an unknown authority): the owner can fix that and nothing else
would tell it, while it says no more about the address than that a TLS server listens there,
at an address the SSRF guard allowed.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

from arena.upstream.client import Failed, FailureKind

EXCERPT_CHARS: Final = 200

# "interrupted" is for stored answers only: the arena stopped while relaying one.
OwnerFailureKind = Literal[
    "unreachable", "unauthorized", "http_status", "too_large", "interrupted", "certificate"
]

UNREACHABLE: Final = (
    "the endpoint could not be reached, or did not answer as an OpenAI-compatible server in "
    "time; check that base_url is the part before /chat/completions (often ending in /v1), "
    "that the server is running and reachable from the arena, and that it answers a chat "
    "completion (streamed or as JSON)"
)
_OVER_TLS: Final = (
    "; over https, its certificate must be one that the authorities the arena trusts vouch for"
)
CERTIFICATE_NOT_TRUSTED: Final = "certificate not trusted"
_CERTIFICATE_DETAIL = re.compile(r"(?:certificate not trusted: )?(.*)\Z", re.DOTALL)

_STATUS_DETAIL = re.compile(r"HTTP (\d{3}): (.*)\Z", re.DOTALL)
_ERROR_OBJECT_PREFIX: Final = "upstream error object: "
_STORED_KINDS: Final[dict[str, FailureKind]] = {kind: kind for kind in get_args(FailureKind)}


@dataclass(frozen=True)
class OwnerFailure:
    kind: OwnerFailureKind
    field: str  # the owner's input at fault
    reason: str  # a sentence on what to change


def scrub_secret(text: str, secret: str | None) -> str:
    """`text` without `secret` in it: upstream error bodies sometimes echo the key they got."""
    if not secret or len(secret) < 4:
        return text
    return text.replace(secret, f"[key ending {secret[-4:]}]")


def clean_excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line, without control or invisible characters, at most `limit` long."""
    # str.isprintable is false for control, format (bidi, zero-width), unassigned characters.
    visible = "".join(c if c.isprintable() else " " for c in text[: limit * 4])
    flat = " ".join(visible.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class ErrorObject:
    """An OpenAI-style error as an endpoint answered it."""

    message: str
    code: str = ""
    param: str = ""


def error_object(body: str) -> ErrorObject | None:
    """`{"error": {"message": ...}}` (OpenAI) or `{"object": "error", "message": ...}` (vLLM),
    else None."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    error = payload.get("error") if "error" in payload else None
    if error is None and payload.get("object") == "error":
        error = payload
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    code, param = error.get("code"), error.get("param")
    return ErrorObject(
        _innermost_message(message),
        code=str(code) if isinstance(code, str | int) else "",
        param=param if isinstance(param, str) else "",
    )


def json_error_message(body: str) -> str | None:
    """The message of an OpenAI-style error (see `error_object`), else None."""
    found = error_object(body)
    return found.message if found is not None else None


_WRAPPED_KEYS: Final = ("message", "error", "detail")


def _innermost_message(message: str, depth: int = 0) -> str:
    """A proxy's message that carries another server's error as JSON or as a Python dict's
    repr ("OpenAIException - {'error': {'message': ...}}") gives that error's message."""
    start = message.find("{")
    if start < 0 or depth >= 3:
        return message
    inner: object = None
    text = message[start : message.rfind("}") + 1]
    for parse in (json.loads, ast.literal_eval):
        try:
            inner = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        break
    for _ in range(3):
        if not isinstance(inner, dict):
            break
        found = next((inner[k] for k in _WRAPPED_KEYS if k in inner), None)
        if isinstance(found, str) and found.strip():
            return _innermost_message(found, depth + 1)
        inner = found
    return message


_UNKNOWN_MODEL = re.compile(
    r"not\s+(?:be\s+)?found|does\s*n[o']t\s+exist|not\s+exist|unknown|invalid|no\s+such|"
    r"not\s+(?:a\s+)?valid|not\s+available|not\s+supported|not\s+served",
    re.IGNORECASE,
)


def names_the_model(error: ErrorObject, model: str) -> bool:
    """Whether the endpoint says the model id it was sent is the trouble."""
    if error.code == "model_not_found" or error.param == "model":
        return True
    text = error.message.lower()
    mentions = (len(model) >= 2 and model.lower() in text) or re.search(r"\bmodel\b", text)
    return bool(mentions and _UNKNOWN_MODEL.search(text))


def explain_failure(
    failed: Failed, *, base_url: str, api_key: str | None, model: str = ""
) -> OwnerFailure:
    """What the owner of `base_url` may read about `failed` (see the module's docstring);
    `model` is the model id the endpoint was sent."""
    if failed.kind == "status":
        return _explain_status(failed.detail, api_key, base_url=base_url, model=model)
    if failed.kind == "too_large":
        return OwnerFailure(
            "too_large",
            "max_tokens",
            "the answer was longer than the arena accepts; lower max_tokens, and check that "
            "the server honours it",
        )
    if failed.kind == "certificate":
        match = _CERTIFICATE_DETAIL.match(failed.detail)
        why = clean_excerpt(match.group(1) if match else failed.detail)
        return OwnerFailure(
            "certificate",
            "base_url",
            f"{CERTIFICATE_NOT_TRUSTED}: {why}; the endpoint must present a certificate for its "
            "host name that chains to an authority the arena trusts (public authorities, or the "
            "operator's CA bundle)",
        )
    # connect, timeout, protocol: alike, so that no port's state can be told from another's.
    over_tls = base_url.lower().startswith("https:")
    return OwnerFailure("unreachable", "base_url", UNREACHABLE + (_OVER_TLS if over_tls else ""))


def explain_stored_error(
    error: str, *, base_url: str, api_key: str | None, model: str = ""
) -> OwnerFailure:
    """`explain_failure` for a failure stored with an answer ("kind: detail")."""
    kind, _, detail = error.partition(": ")
    if kind == "interrupted":  # written by the arena (battles/turns.py), not the endpoint's
        return OwnerFailure(
            "interrupted",
            "",
            "the arena stopped while relaying this answer; not the endpoint's doing",
        )
    failed = Failed(_STORED_KINDS.get(kind, "protocol"), detail)
    return explain_failure(failed, base_url=base_url, api_key=api_key, model=model)


def _explain_status(detail: str, api_key: str | None, *, base_url: str, model: str) -> OwnerFailure:
    """A status a real HTTP server answered, or an error object in place of an answer."""
    match = _STATUS_DETAIL.match(detail)
    code = int(match.group(1)) if match else None
    if match:
        error = error_object(match.group(2))
    elif detail.startswith(_ERROR_OBJECT_PREFIX):
        error = error_object(f'{{"error": {detail.removeprefix(_ERROR_OBJECT_PREFIX)}}}')
    else:
        error = None
    said = ""
    if error is not None:
        said = f'; it said: "{clean_excerpt(scrub_secret(error.message, api_key))}"'
    if error is not None and code not in (401, 403) and names_the_model(error, model):
        shown = f" {clean_excerpt(model, 100)!r}" if model else ""
        status = f" (HTTP {code})" if code is not None else ""
        return OwnerFailure(
            "http_status",
            "model",
            f"the endpoint does not serve the model id{shown}{status}; give the id exactly "
            f"as the server lists it (GET {base_url.rstrip('/')}/models lists them on most "
            f"servers){said}",
        )
    if code in (401, 403):
        return OwnerFailure(
            "unauthorized",
            "api_key",
            f"the endpoint refused the API key (HTTP {code}); check api_key{said}",
        )
    if code == 404:
        return OwnerFailure(
            "http_status",
            "base_url",
            "the endpoint answered HTTP 404 for .../chat/completions; base_url is the part "
            "before /chat/completions (often ending in /v1), and model must be an id the "
            f"server knows{said}",
        )
    if code is not None and 300 <= code < 400:
        return OwnerFailure(
            "http_status",
            "base_url",
            f"the endpoint answered a redirect (HTTP {code}), which the arena never follows; "
            "give the final URL",
        )
    if code is not None:
        return OwnerFailure("http_status", "base_url", f"the endpoint answered HTTP {code}{said}")
    return OwnerFailure(
        "http_status", "model", f"the endpoint answered with an error instead of an answer{said}"
    )
