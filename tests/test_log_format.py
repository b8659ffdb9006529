"""ARENA_LOG_FORMAT=json: one JSON object a line, each request's id in its lines and in the
X-Request-ID header of every answer, the fast lane's too; the default stays uvicorn's text."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import httpx
import pytest

from arena.log_format import JsonLines
from tests.arena_process import ArenaProcess
from tests.conftest import Arena, add_model, make_settings
from tests.fake_upstream import FakeUpstream
from tests.sse import read_stream, start_battle

GENERATED_ID = re.compile(r"[0-9a-f]{16}")


@pytest.mark.slow
def test_json_lines_carry_the_request_id_sent_back_in_the_header(
    database_url: str, tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    # No images: a new battle's body then has the plain limit, so 10 kB is refused with 413.
    settings = make_settings(
        database_url, tmp_path, log_format="json", max_body_bytes=4096, max_images_per_prompt=0
    )
    add_model(settings, "alpha", fake_upstream.base_url, organization="A")
    add_model(settings, "beta", fake_upstream.base_url, organization="B")
    log_path = tmp_path / "serve.log"
    served = ArenaProcess(settings, log_path, cli=True).start(timeout=90)
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            given = client.get("/healthz", headers={"X-Request-ID": "probe-1"})
            assert given.headers["x-request-id"] == "probe-1"
            for unfit in ("x" * 65, "two words", "<script>"):
                fresh = client.get("/healthz", headers={"X-Request-ID": unfit})
                assert GENERATED_ID.fullmatch(fresh.headers["x-request-id"]), unfit
            created = client.post("/api/battles", json={"prompt": "Hello?"})  # the fast lane
            assert created.status_code == 201
            assert GENERATED_ID.fullmatch(created.headers["x-request-id"])
            with client.stream(
                "GET", f"/api/battles/{created.json()['battle_id']}/stream"
            ) as stream:
                assert GENERATED_ID.fullmatch(stream.headers["x-request-id"])
                stream.read()
            too_large = client.post("/api/battles", content=b"x" * 10_000)
            assert too_large.status_code == 413
            assert GENERATED_ID.fullmatch(too_large.headers["x-request-id"])
            ids = {given.headers["x-request-id"], created.headers["x-request-id"]}
    finally:
        served.stop()
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    probe = [r for r in access if r.get("request_id") == "probe-1"]
    assert probe and probe[0]["method"] == "GET" and probe[0]["path"] == "/healthz"
    assert probe[0]["status"] == 200
    assert ids <= {r.get("request_id") for r in access}


def test_text_logs_by_default_and_no_request_id_header(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha", fake_upstream.base_url, organization="A")
    arena.add_model("beta", fake_upstream.base_url, organization="B")
    with arena.client() as visitor:
        assert "x-request-id" not in visitor.get("/healthz").headers
        battle_id = start_battle(visitor)
        assert read_stream(visitor, battle_id).end["status"] == "ready"


def test_an_exception_stays_on_one_line() -> None:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        record = logging.LogRecord(
            "arena.test", logging.ERROR, __file__, 1, "it failed: %s", ("x",), sys.exc_info()
        )
    line = JsonLines().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "it failed: x" and parsed["level"] == "error"
    assert "ValueError: broken" in parsed["exc_info"]
