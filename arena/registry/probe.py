"""The endpoint probe: one short real chat completion before an endpoint is stored or resumed."""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass, replace
from typing import Final, Literal

from PIL import Image

from arena.config import Settings
from arena.errors import EndpointRefused, EndpointUnresolvable, InvalidInput, ProbeFailed
from arena.registry.address_guard import Resolver, pinned_endpoint, system_resolve
from arena.registry.failure_reasons import OwnerFailureKind, explain_failure, scrub_secret
from arena.upstream.client import Endpoint, Limits, UpstreamEvent, stream_chat
from arena.upstream.http import UpstreamClient

PROBE_PROMPT: Final = "Reply with one short sentence to say that you are ready."
IMAGE_PROBE_PROMPT: Final = "Say in one short sentence what colour this picture is."
# Enough for a first sentence; the probe checks the protocol, not the quality.
PROBE_MAX_TOKENS: Final = 64
SAMPLE_CHARS: Final = 200

# Before the request: the URL and the SSRF guard's checks; after: see failure_reasons.py.
ProbeKind = Literal["ok", "bad_url", "refused_address", "dns"] | OwnerFailureKind


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


def probe_limits(settings: Settings) -> Limits:
    return Limits(
        connect=min(settings.connect_timeout, settings.probe_timeout),
        first_token=settings.probe_timeout,
        idle=settings.probe_timeout,
        total=settings.probe_timeout,
        max_answer_bytes=settings.max_answer_bytes,
    )


@functools.cache
def probe_image_url() -> str:
    """A tiny picture (16x16, one colour) as a PNG data URL: what the probe of a model that
    declares image support sends. Made on first use, not at import."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def image_probe_message() -> dict[str, object]:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": IMAGE_PROBE_PROMPT},
            {"type": "image_url", "image_url": {"url": probe_image_url()}},
        ],
    }


async def probe_endpoint(
    client: UpstreamClient,
    endpoint: Endpoint,
    *,
    settings: Settings,
    resolve: Resolver = system_resolve,
    images: bool = False,
) -> ProbeResult:
    """Check the URL against the SSRF guard, then ask for a short real answer; with `images`
    (the model declares that it reads images), then for an answer about a tiny picture too.
    Never raises."""
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
        failure = explain_failure(
            answer.failure,
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            model=endpoint.model,
        )
        # How long an unreachable endpoint took would tell a refused port from a silent one.
        latency = None if failure.kind == "unreachable" else answer.duration_ms
        return ProbeResult(False, failure.kind, failure.field, failure.reason, latency_ms=latency)
    if images:
        seen = await stream_chat(client, asked, [image_probe_message()], limits, ignore)
        if seen.failure is not None:
            failure = explain_failure(
                seen.failure,
                base_url=endpoint.base_url,
                api_key=endpoint.api_key,
                model=endpoint.model,
            )
            return ProbeResult(
                False,
                failure.kind,
                "supports_images",
                "the endpoint answered a text prompt but not one with a picture "
                f"({failure.reason}); register it without supports_images, or use a model "
                "that reads images",
            )
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
