"""The battle page over plain HTTP: what it is served with and what it must never contain."""

from __future__ import annotations

import re

from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream


def _policy(header: str) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def test_page_is_served_with_a_strict_content_policy(arena: Arena) -> None:
    with arena.client() as visitor:
        page = visitor.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = _policy(page.headers["content-security-policy"])
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"


def test_page_has_no_inline_script_and_no_model_identity(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal", organization="Alpha Labs")
    arena.add_model("beta-13b", fake_upstream.base_url, "normal", organization="Beta Inc")
    with arena.client() as visitor:
        html = visitor.get("/").text
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts and all(body.strip() == "" for body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I), "inline event handler"
    for identity in ("alpha-7b", "beta-13b", "Alpha Labs", "Beta Inc", fake_upstream.base_url):
        assert identity not in html
    for label in ("Model A", "Model B", "A is better", "B is better", "Tie", "Both are bad"):
        assert label in html


def test_api_answers_carry_the_safe_headers_and_stream_unbuffered(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal")
    arena.add_model("beta-13b", fake_upstream.base_url, "normal")
    with arena.client() as visitor:
        created = visitor.post("/api/battles", json={"prompt": "hi"})
        assert created.headers["x-content-type-options"] == "nosniff"
        battle_id = created.json()["battle_id"]
        with visitor.stream("GET", f"/api/battles/{battle_id}/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["x-content-type-options"] == "nosniff"
            assert "content-security-policy" not in stream.headers
            assert '"type":"end"' in stream.read().decode()


def test_every_page_links_the_owner_sign_up_and_the_api_docs_and_none_the_console(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, "normal", organization="Alpha Labs")
    with arena.client() as visitor:
        for path in ("/", "/leaderboard", "/owner", "/models/alpha-7b", "/models/nobody"):
            page = visitor.get(path)
            assert page.headers["content-type"].startswith("text/html"), path
            footer = re.search(r"<footer\b.*?</footer>", page.text, flags=re.S)
            assert footer is not None, f"{path} has no footer"
            for href in ('href="/owner"', 'href="/docs"', 'href="/leaderboard#downloads-title"'):
                assert href in footer.group(0), (path, href)
            assert "/admin" not in page.text, f"{path} points at the operator's console"
