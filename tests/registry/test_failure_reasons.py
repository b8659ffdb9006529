"""What owners read about a failure: bounded excerpts of JSON error messages, never a body."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arena.battles.turns import INTERRUPTED
from arena.registry.failure_reasons import (
    EXCERPT_CHARS,
    UNREACHABLE,
    clean_excerpt,
    explain_failure,
    explain_stored_error,
    json_error_message,
)
from arena.upstream.client import Failed

URL = "http://10.0.0.5:8080/v1"


def test_only_an_openai_style_error_message_is_taken() -> None:
    assert json_error_message('{"error": {"message": "bad key", "type": "auth"}}') == "bad key"
    for body in (
        "<html>secret</html>",
        '{"error": "flat string"}',
        '{"error": {"message": 42}}',
        '{"error": {"message": "   "}}',
        '["error"]',
        '{"detail": "not this shape"}',
    ):
        assert json_error_message(body) is None, body


@given(st.text(max_size=2000))
def test_an_excerpt_is_one_bounded_line_of_visible_characters(text: str) -> None:
    excerpt = clean_excerpt(text)
    assert len(excerpt) <= EXCERPT_CHARS
    assert excerpt == excerpt.strip()
    assert all(c == " " or (c.isprintable() and not c.isspace()) for c in excerpt), excerpt


def test_an_excerpt_keeps_the_words_in_order() -> None:
    assert clean_excerpt("bad\x07key\r\nsecond\u202eline") == "bad key second line"
    assert clean_excerpt("x" * 500) == "x" * (EXCERPT_CHARS - 1) + "…"


def test_failures_before_an_http_status_read_alike() -> None:
    reasons = {
        explain_failure(failed, base_url=URL, api_key=None)
        for failed in (
            Failed("connect", "[Errno 111] Connection refused"),
            Failed("timeout", "no first token within 15.0s"),
            Failed("protocol", "connection broke: invalid HTTP method"),
            Failed("protocol", "expected text/event-stream or application/json, got 'text/html'"),
        )
    }
    assert len(reasons) == 1
    (reason,) = reasons
    assert (reason.kind, reason.field, reason.reason) == ("unreachable", "base_url", UNREACHABLE)


def test_a_status_shows_its_code_and_the_json_message_only() -> None:
    page = explain_failure(
        Failed("status", "HTTP 502: <html>root:x:0:0 sk-live-1234567890</html>"),
        base_url=URL,
        api_key=None,
    )
    assert page.reason == "the endpoint answered HTTP 502"
    echoed = explain_failure(
        Failed("status", 'HTTP 429: {"error": {"message": "key sk-live-1234567890 over quota"}}'),
        base_url=URL,
        api_key="sk-live-1234567890",
    )
    assert (
        echoed.reason
        == 'the endpoint answered HTTP 429; it said: "key [key ending 7890] over quota"'
    )
    in_stream = explain_failure(
        Failed("status", 'upstream error object: {"message": "model is loading", "code": 503}'),
        base_url=URL,
        api_key=None,
    )
    assert in_stream.field == "model" and in_stream.reason.endswith('it said: "model is loading"')


def test_a_stored_error_is_explained_the_same_way() -> None:
    stored = explain_stored_error("status: HTTP 500: <p>internal</p>", base_url=URL, api_key=None)
    assert stored.reason == "the endpoint answered HTTP 500"
    refused = explain_stored_error(
        "connect: refused by the address guard: 10.0.0.5", base_url=URL, api_key=None
    )
    assert refused.reason == UNREACHABLE


def test_an_interrupted_answer_is_not_the_endpoints_doing() -> None:
    stored = explain_stored_error(INTERRUPTED, base_url=URL, api_key=None)
    assert stored.kind == "interrupted" and "not the endpoint's doing" in stored.reason


def test_a_certificate_not_trusted_is_named_with_its_reason_on_one_bounded_line() -> None:
    why = "Hostname mismatch, certificate is not valid for 'api.example.org'."
    failed = Failed("certificate", f"certificate not trusted: {why}")
    explained = explain_failure(failed, base_url="https://api.example.org/v1", api_key=None)
    assert explained.kind == "certificate" and explained.field == "base_url"
    assert explained.reason.startswith(f"certificate not trusted: {why}; ")
    assert "operator's CA bundle" in explained.reason
    stored = explain_stored_error(
        f"certificate: certificate not trusted: {why}", base_url=URL, api_key=None
    )
    assert stored == explained
    hostile = Failed("certificate", "certificate not trusted: a\nb\x1b[31m" + "x" * 5000)
    reason = explain_failure(hostile, base_url=URL, api_key=None).reason
    assert "\n" not in reason and "\x1b" not in reason
    assert len(reason) < EXCERPT_CHARS + 300


# A model id the server does not serve, as servers of each kind answer it (HTTP status, body).
UNKNOWN_MODEL_ANSWERS = {
    "OpenAI": (
        404,
        '{"error": {"message": "The model `gpt-9` does not exist or you do not have access to '
        'it.", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}',
        "The model `gpt-9` does not exist or you do not have access to it.",
    ),
    "vLLM": (
        404,
        '{"object": "error", "message": "The model `gpt-9` does not exist.", '
        '"type": "NotFoundError", "param": null, "code": 404}',
        "The model `gpt-9` does not exist.",
    ),
    "Ollama": (
        404,
        '{"error": {"message": "model \\"gpt-9\\" not found, try pulling it first", '
        '"type": "api_error", "param": null, "code": null}}',
        'model "gpt-9" not found, try pulling it first',
    ),
    "LiteLLM, wrapping a Python dict": (
        400,
        '{"error": {"message": "{\'error\': \'/chat/completions: Invalid model name passed in '
        "model=gpt-9. Call `/v1/models` to view available models for your key.'}\", "
        '"type": "None", "param": "None", "code": "400"}}',
        "/chat/completions: Invalid model name passed in model=gpt-9. Call `/v1/models` to "
        "view available models for your key.",
    ),
    "a proxy wrapping JSON": (
        404,
        '{"error": {"message": "OpenAIException - {\\"error\\": {\\"message\\": \\"The model '
        '`gpt-9` does not exist\\", \\"code\\": \\"model_not_found\\"}}"}}',
        "The model `gpt-9` does not exist",
    ),
}


@pytest.mark.parametrize(
    ("status", "body", "said"), UNKNOWN_MODEL_ANSWERS.values(), ids=UNKNOWN_MODEL_ANSWERS.keys()
)
def test_an_unknown_model_id_is_put_on_the_model_with_the_servers_sentence(
    status: int, body: str, said: str
) -> None:
    failure = explain_failure(
        Failed("status", f"HTTP {status}: {body}"), base_url=URL, api_key=None, model="gpt-9"
    )
    assert failure.field == "model"
    assert failure.reason.startswith(
        f"the endpoint does not serve the model id 'gpt-9' (HTTP {status}); give the id exactly "
        f"as the server lists it (GET {URL}/models lists them on most servers)"
    )
    assert failure.reason.endswith(f'; it said: "{said}"')
    assert "{" not in failure.reason


def test_a_404_that_does_not_name_the_model_stays_on_base_url() -> None:
    for body in ('{"detail": "Not Found"}', "<h1>Not Found</h1>", '{"error": {"message": "no"}}'):
        failure = explain_failure(
            Failed("status", f"HTTP 404: {body}"), base_url=URL, api_key=None, model="gpt-9"
        )
        assert failure.field == "base_url", body
    refused = explain_failure(
        Failed("status", 'HTTP 403: {"error": {"message": "no access to model gpt-9"}}'),
        base_url=URL,
        api_key=None,
        model="gpt-9",
    )
    assert refused.field == "api_key"


def test_a_message_that_is_not_wrapped_json_is_kept_as_it_is() -> None:
    for message in ("bad {value", "{not: json}", "{" * 300 + "}" * 300, "quota {x} exceeded"):
        body = json.dumps({"error": {"message": message}})
        assert json_error_message(body) == message
