"""Owner accounts and endpoint registrations over the real API, for the registry tests."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Arena

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_up(client: httpx.Client, email: str = "ada@example.org", name: str = "Ada") -> str:
    answer = client.post("/api/owners", json={"name": name, "email": email})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def registration(
    base_url: str, name: str = "ada-7b", model: str = "normal", **fields: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "organization": "Ada Labs",
        "license": "Apache-2.0",
        "description": "A careful model.",
        "base_url": base_url,
        "model": model,
        "max_tokens": 256,
        "temperature": 0.5,
        **fields,
    }


def register(
    client: httpx.Client,
    token: str,
    base_url: str,
    name: str = "ada-7b",
    model: str = "normal",
    **fields: Any,
) -> httpx.Response:
    return client.post(
        "/api/models", json=registration(base_url, name, model, **fields), headers=bearer(token)
    )


def owner_with_model(
    arena: Arena, base_url: str, name: str = "ada-7b", model: str = "normal", **fields: Any
) -> str:
    """An owner (its token) with one registered model, approved by the operator."""
    with arena.client() as client:
        token = sign_up(client, email=f"{name}@example.org")
        created = register(client, token, base_url, name, model, **fields)
        assert created.status_code == 201, created.text
        approved = client.post(f"/api/admin/models/{name}/approve", headers=ADMIN)
        assert approved.status_code == 200, approved.text
    return token
