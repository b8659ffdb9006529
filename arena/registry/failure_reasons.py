"""What an owner is told about an endpoint's failure: enough to fix a real endpoint, too little
to map a network with.

An owner chooses where the arena connects: any address when private endpoints are allowed (the
demo allows them), and a public host name can later resolve elsewhere. So a closed port (the
connection refused), a silent one (a timeout), a listener that is no HTTP server and a web page
that is no chat completion all read alike, and a body is never repeated: it could be an internal
page. What a real HTTP server answered is shown: its status code, with the message of an
OpenAI-style JSON error (`{"error": {"message": ...}}`), bounded and without control characters.
The whole failure is in the operator's log (the chat client logs every one).

A certificate the arena does not trust is named as such, with OpenSSL's reason (an expired
certificate, another host's, an unknown authority): the owner can fix that and nothing else
would tell it, while it says no more about the address than that a TLS server listens there,
at an address the SSRF guard allowed.
"""

from __future__ import annotations

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


def json_error_message(body: str) -> str | None:
    """The message of an OpenAI-style error, `{"error": {"message": "..."}}`, else None."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message.strip() else None


def explain_failure(failed: Failed, *, base_url: str, api_key: str | None) -> OwnerFailure:
    """What the owner of `base_url` may read about `failed` (see the module's docstring)."""
    if failed.kind == "status":
        return _explain_status(failed.detail, api_key)
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


def explain_stored_error(error: str, *, base_url: str, api_key: str | None) -> OwnerFailure:
    """`explain_failure` for a failure stored with an answer ("kind: detail")."""
    kind, _, detail = error.partition(": ")
    if kind == "interrupted":  # written by the arena (battles/turns.py), not the endpoint's
        return OwnerFailure(
            "interrupted",
            "",
            "the arena stopped while relaying this answer; not the endpoint's doing",
        )
    failed = Failed(_STORED_KINDS.get(kind, "protocol"), detail)
    return explain_failure(failed, base_url=base_url, api_key=api_key)


def _explain_status(detail: str, api_key: str | None) -> OwnerFailure:
    """A status a real HTTP server answered, or an error object in place of an answer."""
    match = _STATUS_DETAIL.match(detail)
    code = int(match.group(1)) if match else None
    if match:
        message = json_error_message(match.group(2))
    elif detail.startswith(_ERROR_OBJECT_PREFIX):
        message = json_error_message(f'{{"error": {detail.removeprefix(_ERROR_OBJECT_PREFIX)}}}')
    else:
        message = None
    said = ""
    if message is not None:
        said = f'; it said: "{clean_excerpt(scrub_secret(message, api_key))}"'
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
