"""Owner input: every field bounded and typed, and a 422 that names the field at fault."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.registry.accounts import bearer, registration, sign_up

BASE = "http://127.0.0.1:9/v1"  # never reached: every case fails validation first


@pytest.fixture(scope="module")
def checker(shared_arena_factory: Callable[..., Arena]) -> tuple[Arena, str]:
    """One arena and one owner for the tables of bad inputs."""
    arena = shared_arena_factory(signups_per_hour=1000)
    with arena.client() as client:
        return arena, sign_up(client, email="checker@example.org")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a" * 101}, "name"),
        ({"name": "-leading-dash"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "slash/name"}, "name"),
        ({"name": "<script>"}, "name"),
        ({"name": "mine"}, "name"),
        ({"name": 7}, "name"),
        ({"organization": "x" * 101}, "organization"),
        ({"organization": "two\nlines"}, "organization"),
        ({"license": "x" * 101}, "license"),
        ({"description": "x" * 2001}, "description"),
        ({"system_prompt": "x" * 8001}, "system_prompt"),
        ({"base_url": ""}, "base_url"),
        ({"base_url": "http://example.com/" + "a" * 2048}, "base_url"),
        ({"base_url": None}, "base_url"),
        ({"model": ""}, "model"),
        ({"model": "m" * 201}, "model"),
        ({"model": "bad\r\nX-Injected: 1"}, "model"),
        ({"api_key": ""}, "api_key"),
        ({"api_key": "sk key with spaces"}, "api_key"),
        ({"api_key": "sk-key\r\nX-Injected: 1"}, "api_key"),
        ({"api_key": "k" * 4097}, "api_key"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 32769}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.01}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"description": "nul\x00byte"}, "description"),
        ({"system_prompt": "\x00"}, "system_prompt"),
        ({"status": "active"}, "status"),
        ({"owner_id": 1}, "owner_id"),
    ],
)
def test_registration_input_is_validated_naming_the_field(
    checker: tuple[Arena, str], change: dict[str, Any], field: str
) -> None:
    arena, token = checker
    with arena.client() as client:
        body = {**registration(BASE), **change}
        answer = client.post("/api/models", json=body, headers=bearer(token))
    assert answer.status_code == 422, answer.text
    fields = [e["field"] for e in answer.json()["errors"]]
    assert field in fields, answer.json()
    assert answer.json()["detail"].startswith(f"{field}: ")


# What a person reads under each field: what to write, in words, not the library's terms.
PLAIN_MESSAGES = [
    ({"name": "has space"}, "name", "must be 1 to 100 letters, digits and . _ : + - (no spaces"),
    ({"name": ""}, "name", "must be 1 to 100 letters"),
    ({"model": ""}, "model", "must not be empty"),
    ({"model": "m" * 201}, "model", "must be at most 200 characters long"),
    ({"api_key": "sk key"}, "api_key", "may hold only visible ASCII characters, no spaces"),
    ({"max_tokens": 0}, "max_tokens", "must be 1 or more"),
    ({"max_tokens": 32769}, "max_tokens", "must be 32768 or less"),
    ({"max_tokens": 1.5}, "max_tokens", "must be a whole number"),
    ({"temperature": "0.5"}, "temperature", "must be a number"),
    ({"temperature": 2.5}, "temperature", "must be 2.0 or less"),
    ({"name": 7}, "name", "must be text"),
    ({"organization": "a\tb"}, "organization", "contains a tab (U+0009) at character 2"),
    ({"base_url": None}, "base_url", "must be text"),
    ({"status": "active"}, "status", "not a field of this request; leave it out"),
]
LIBRARY_WORDING = ("String should", "Input should", "Field required", "Value error", "pattern")


@pytest.mark.parametrize(("change", "field", "message"), PLAIN_MESSAGES)
def test_registration_errors_say_what_to_write(
    checker: tuple[Arena, str], change: dict[str, Any], field: str, message: str
) -> None:
    arena, token = checker
    with arena.client() as client:
        body = {**registration(BASE), **change}
        answer = client.post("/api/models", json=body, headers=bearer(token))
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["field"] == field
    assert error["message"].startswith(message), error
    assert answer.json()["detail"] == f"{field}: {error['message']}"
    assert not any(words in error["message"] for words in LIBRARY_WORDING), error


def test_sign_up_errors_say_what_to_write(checker: tuple[Arena, str]) -> None:
    arena, _ = checker
    with arena.client() as client:
        answer = client.post("/api/owners", json={"name": "", "email": "a@", "invite_code": ""})
        missing = client.post("/api/owners", json={"name": "Ada"})
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"field": "name", "message": "must not be empty"},
        {"field": "email", "message": "is not an email address; write it like name@example.org"},
        {"field": "invite_code", "message": "must not be empty"},
    ]
    assert missing.json()["errors"] == [{"field": "email", "message": "is required; fill it in"}]


CONTROL_CHARACTERS = {
    "tab": "\t",
    "line feed": "\n",
    "carriage return": "\r",
    "escape": "\x1b",
    "delete": "\x7f",
    "next line (C1)": "\x85",
    "C1 string terminator": "\x9c",
    "line separator": "\u2028",
}
ONE_LINE_FIELDS = ("organization", "license", "model", "base_url")


@pytest.mark.parametrize("field", ONE_LINE_FIELDS)
@pytest.mark.parametrize("char", CONTROL_CHARACTERS.values(), ids=CONTROL_CHARACTERS.keys())
def test_control_characters_in_owner_text_are_refused_naming_the_field(
    checker: tuple[Arena, str], field: str, char: str
) -> None:
    arena, token = checker
    value = {"base_url": f"{BASE}/x{char}y", "model": f"m{char}1"}.get(field, f"Org{char}Labs")
    with arena.client() as client:
        body = {**registration(BASE), field: value}
        answer = client.post("/api/models", json=body, headers=bearer(token))
        patch = client.patch("/api/models/ada-7b", json={field: f"{char}x"}, headers=bearer(token))
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    detail = answer.json()["detail"]
    assert detail.startswith(f"{field}: ") and f"U+{ord(char):04X}" in detail, detail
    assert patch.status_code == 422 and patch.json()["errors"][0]["field"] == field, patch.text


@pytest.mark.parametrize("char", CONTROL_CHARACTERS.values(), ids=CONTROL_CHARACTERS.keys())
def test_control_characters_in_owner_names_and_reasons_are_refused(
    checker: tuple[Arena, str], char: str
) -> None:
    arena, token = checker
    with arena.client() as client:
        owner = client.post("/api/owners", json={"name": f"Ada{char}", "email": "b@example.org"})
        reason = client.post(
            "/api/models/ada-7b/pause", json={"reason": f"{char}=cmd"}, headers=bearer(token)
        )
    for answer, field in ((owner, "name"), (reason, "reason")):
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == field
        assert f"U+{ord(char):04X}" in answer.json()["detail"]


@pytest.mark.parametrize("field", ["system_prompt", "description"])
def test_text_of_several_lines_keeps_its_lines_and_refuses_other_controls(
    arena: Arena, fake_upstream: FakeUpstream, field: str
) -> None:
    """The system prompt and the description (a text area on the owner page) have paragraphs."""
    text = "You are terse.\r\nExamples:\n\t- one\n\t- two\u2028end"
    with arena.client() as client:
        token = sign_up(client)
        made = client.post(
            "/api/models",
            json=registration(fake_upstream.base_url, **{field: text}),
            headers=bearer(token),
        )
        assert made.status_code == 201, made.text
        mine = client.get("/api/models/mine", headers=bearer(token)).json()
        refused = [
            client.patch("/api/models/ada-7b", json={field: f"a{char}b"}, headers=bearer(token))
            for char in ("\x00", "\x1b", "\x7f", "\x85")
        ]
    assert [m[field] for m in mine] == [text]
    for answer in refused:
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith(f"{field}: ") and "at character 2" in detail, detail


def test_numbers_outside_json_are_refused(checker: tuple[Arena, str]) -> None:
    arena, token = checker
    with arena.client() as client:
        for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
            raw = (
                '{"name": "x", "base_url": "'
                + BASE
                + '", "model": "m", "temperature": '
                + literal
                + "}"
            )
            answer = client.post(
                "/api/models",
                content=raw,
                headers={**bearer(token), "Content-Type": "application/json"},
            )
            assert answer.status_code == 422, (literal, answer.text)


def test_bounds_are_inclusive(arena: Arena, fake_upstream: FakeUpstream) -> None:
    with arena.client() as client:
        token = sign_up(client)
        for name, values in [
            ("low", {"max_tokens": 1, "temperature": 0}),
            ("high", {"max_tokens": 32768, "temperature": 2.0}),
        ]:
            body = {**registration(fake_upstream.base_url, name=name), **values}
            answer = client.post("/api/models", json=body, headers=bearer(token))
            assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "email": "a@example.org"}, "name"),
        ({"name": "Ada", "email": "not-an-email"}, "email"),
        ({"name": "Ada", "email": "a@b"}, "email"),
        ({"name": "Ada", "email": "x" * 250 + "@example.org"}, "email"),
        ({"name": "Ada\nInjected", "email": "a@example.org"}, "name"),
        ({"name": "Ada", "email": "a@example.org", "is_admin": True}, "is_admin"),
    ],
)
def test_sign_up_input_is_validated(
    checker: tuple[Arena, str], body: dict[str, Any], field: str
) -> None:
    arena, _token = checker
    with arena.client() as client:
        answer = client.post("/api/owners", json=body)
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]]


def test_patch_refuses_nulls_and_empty_changes(arena: Arena, fake_upstream: FakeUpstream) -> None:
    with arena.client() as client:
        token = sign_up(client)
        client.post("/api/models", json=registration(fake_upstream.base_url), headers=bearer(token))
        for body in ({}, {"temperature": None}, {"name": "renamed"}, {"max_tokens": 0}):
            answer = client.patch("/api/models/ada-7b", json=body, headers=bearer(token))
            assert answer.status_code == 422, (body, answer.text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    overrides=st.dictionaries(
        st.sampled_from(
            ["name", "organization", "base_url", "model", "api_key", "max_tokens", "temperature"]
        ),
        json_values,
        max_size=3,
    )
)
def test_no_input_makes_the_server_fail(
    checker: tuple[Arena, str], overrides: dict[str, Any]
) -> None:
    """Whatever the values, the answer is a judgement (4xx), never a crash."""
    arena, owner_token = checker
    with httpx.Client(base_url=arena.url, timeout=30) as client:
        body = {**registration(BASE), **overrides}
        answer = client.post("/api/models", json=body, headers=bearer(owner_token))
    assert 400 <= answer.status_code < 500, answer.text
    assert "detail" in answer.json()
