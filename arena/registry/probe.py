"""The endpoint probe: one short real chat completion, and what its failure means to an owner."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final, Literal

from arena.config import Settings
from arena.errors import EndpointRefused, EndpointUnresolvable, InvalidInput, ProbeFailed
from arena.registry.address_guard import Resolver, pinned_endpoint, system_resolve
from arena.upstream.client import Endpoint, Failed, Limits, UpstreamEvent, stream_chat
from arena.upstream.http import UpstreamClient

PROBE_PROMPT: Final = "Reply with one short sentence to say that you are ready."
# Enough for a first sentence; the probe checks the protocol, not the quality.
PROBE_MAX_TOKENS: Final = 64
SAMPLE_CHARS: Final = 200
_DETAIL_CHARS: Final = 300

ProbeKind = Literal[
    "ok",
    "bad_url",
    "refused_address",
    "dns",
    "connect",
    "tls",
    "unauthorized",
    "http_status",
    "timeout",
    "not_openai",
]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    kind: ProbeKind
    # The owner's input at fault (base_url, api_key, model) and a sentence on what to change
    field: str = ""
    reason: str = ""
    latency_ms: float | None = None
    first_token_ms: float | None = None
    sample: str = ""

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise ProbeFailed(f"{self.field}: {self.reason}")


def scrub_secret(text: str, secret: str | None) -> str:
    """`text` without `secret` in it: upstream error bodies sometimes echo the key they got."""
    if not secret or len(secret) < 4:
        return text
    return text.replace(secret, f"[key ending {secret[-4:]}]")


def probe_limits(settings: Settings) -> Limits:
    return Limits(
        connect=min(settings.connect_timeout, settings.probe_timeout),
        first_token=settings.probe_timeout,
        idle=settings.probe_timeout,
        total=settings.probe_timeout,
        max_answer_bytes=settings.max_answer_bytes,
    )


def _explain(failed: Failed, endpoint: Endpoint, limits: Limits) -> tuple[ProbeKind, str, str]:
    detail = scrub_secret(failed.detail, endpoint.api_key)[:_DETAIL_CHARS]
    if failed.kind == "timeout":
        return "timeout", "base_url", f"the endpoint did not answer in time ({detail})"
    if failed.kind == "connect":
        if re.search(r"ssl|tls|certificate", detail, re.IGNORECASE):
            return (
                "tls",
                "base_url",
                f"the TLS handshake failed ({detail}); the server needs a certificate that "
                "public authorities vouch for, or use http:// if it speaks plain HTTP",
            )
        return (
            "connect",
            "base_url",
            f"could not connect ({detail}); is the server running and reachable from the arena?",
        )
    if failed.kind == "status":
        match = re.match(r"HTTP (\d{3})", failed.detail)
        code = int(match.group(1)) if match else None
        if code in (401, 403):
            return (
                "unauthorized",
                "api_key",
                f"the endpoint refused the API key (HTTP {code}); check api_key",
            )
        if code == 404:
            return (
                "http_status",
                "base_url",
                "the endpoint answered HTTP 404 for .../chat/completions; base_url is the part "
                "before /chat/completions (often ending in /v1), and model must be an id the "
                f"server knows ({detail})",
            )
        if code is not None and 300 <= code < 400:
            return (
                "http_status",
                "base_url",
                f"the endpoint answered a redirect (HTTP {code}), which the arena never "
                "follows; give the final URL",
            )
        if code is not None:
            return "http_status", "base_url", f"the endpoint answered HTTP {code} ({detail})"
        return "http_status", "model", f"the endpoint answered with an error ({detail})"
    return (
        "not_openai",
        "base_url",
        f"the answer is not an OpenAI-compatible chat completion ({detail})",
    )


async def probe_endpoint(
    client: UpstreamClient,
    endpoint: Endpoint,
    *,
    settings: Settings,
    resolve: Resolver = system_resolve,
) -> ProbeResult:
    """Check the URL against the SSRF guard, then ask for a short real answer. Never raises."""
    try:
        pinned = await pinned_endpoint(
            endpoint, allow_private=settings.allow_private_endpoints, resolve=resolve
        )
    except EndpointRefused as exc:
        return ProbeResult(False, "refused_address", "base_url", _after_field(exc.message))
    except EndpointUnresolvable as exc:
        return ProbeResult(False, "dns", "base_url", _after_field(exc.message))
    except InvalidInput as exc:
        return ProbeResult(False, "bad_url", "base_url", _after_field(exc.message))
    limits = probe_limits(settings)
    asked = replace(pinned, max_tokens=min(pinned.max_tokens, PROBE_MAX_TOKENS))

    def ignore(_event: UpstreamEvent) -> None:
        pass

    answer = await stream_chat(
        client, asked, [{"role": "user", "content": PROBE_PROMPT}], limits, ignore
    )
    if answer.failure is not None:
        kind, field, reason = _explain(answer.failure, endpoint, limits)
        return ProbeResult(False, kind, field, reason, latency_ms=answer.duration_ms)
    return ProbeResult(
        True,
        "ok",
        latency_ms=answer.duration_ms,
        first_token_ms=answer.first_token_ms,
        sample=scrub_secret(answer.text, endpoint.api_key)[:SAMPLE_CHARS],
    )


def _after_field(message: str) -> str:
    """The guard's messages start with 'base_url: '; the result keeps the field apart."""
    return message.split(": ", 1)[1] if message.startswith("base_url: ") else message
