"""Leaderboard benchmark (issue 3 "Speed"): page cost against /healthz, and one full recompute.

    python bench/leaderboard.py                         # about four minutes on 2 cores
    python bench/leaderboard.py --votes 200000 --seconds 5

A scratch PostgreSQL database (created here, dropped at the end) gets --models models and --votes
counted votes with their battles, bulk-loaded with COPY; strengths are drawn at random, winners
follow Bradley-Terry, one vote in ten is a tie, and the battles carry languages and category tags
as the recompute job stores them. Then, in one run:

1. one full recompute (`run_recompute`: every method and category, bootstrap included) is timed,
   after timing the load of the counted votes on its own; then the same recompute without the
   fragility figures (the baseline) and with them again, so their cost is a ratio measured in
   the same run (--pairs such pairs);
2. the arena runs under uvicorn in a subprocess (one worker), and a load client in another
   process (raw asyncio HTTP/1.1 on keep-alive connections, no HTTP library in the way) keeps
   --concurrency requests in flight for --seconds on each of /healthz, /leaderboard,
   /leaderboard.csv and /healthz again; it reports requests per second and p50 / p99 latency.

It prints each page's cost relative to /healthz (the mean of both /healthz runs): throughput
ratio and p99 ratio. The goal: a leaderboard request costs no more than twice /healthz. Only
127.0.0.1 is contacted; every process stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scratch import scratch_database

HOST = "127.0.0.1"
ADMIN_URL = os.environ.get(
    "ARENA_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
LANGUAGES = ["English", "Chinese", "German", "Spanish", "French", "Japanese", "Russian"]
LANGUAGE_SHARES = [0.55, 0.12, 0.09, 0.08, 0.07, 0.05, 0.04]

# ---------------------------------------------------------------- the load client


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """Read one response (Content-Length or chunked body); return its status code, as bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)[1]
    length = -1
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length > 0:
        await reader.readexactly(length)
    return status


async def _one_connection(
    port: int, request: bytes, warm_until: float, stop_at: float, latencies: list[float],
    errors: list[str],
) -> None:  # fmt: skip
    """Requests back to back on one keep-alive connection; only those after warm_until count."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while (started := time.perf_counter()) < stop_at:
            writer.write(request)
            status = await _read_response(reader)
            if started >= warm_until:
                latencies.append(time.perf_counter() - started)
                if status != b"200":
                    errors.append(status.decode())
    finally:
        writer.close()


async def _load(port: int, path: str, concurrency: int, seconds: float) -> dict[str, Any]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept-Encoding: gzip\r\n"
        "User-Agent: arena-bench\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors: list[str] = []
    # The first two seconds open the connections and fill the caches; they are not counted.
    warm_until = time.perf_counter() + 2.0
    stop_at = warm_until + seconds
    await asyncio.gather(
        *(
            _one_connection(port, request, warm_until, stop_at, latencies, errors)
            for _ in range(concurrency)
        )
    )
    return {
        "path": path,
        "requests": len(latencies),
        "seconds": time.perf_counter() - warm_until,
        "errors": len(errors),
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None,
        "max_ms": float(max(latencies) * 1000) if latencies else None,
    }


def run_client(port: int, path: str, concurrency: int, seconds: float) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_load(port, path, concurrency, seconds))))


def measure(port: int, path: str, concurrency: int, seconds: float) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            "--port",
            str(port),
            "--path",
            path,
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- the data


def _full_rows(table: Any, given: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Column names and constant values for the columns `given` leaves out (their defaults)."""
    names, constants = [], []
    for column in table.columns:
        if column.name in given or (column.primary_key and column.default is None):
            continue
        default = column.default
        if default is None:
            if column.nullable:
                continue
            raise RuntimeError(f"{table.name}.{column.name} needs a value in the benchmark")
        value = default.arg(None) if default.is_callable else default.arg
        names.append(column.name)
        constants.append(value)
    return names, constants


def _copy_value(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value)
    if hasattr(value, "value") and not isinstance(value, str | int | float):
        return value.value
    return value


def _conv_metadata(tokens: Any, markdown: Any) -> dict[str, Any]:
    """FastChat's conv_metadata with these sums: all headers h2, list items ordered, bold **."""
    made: dict[str, Any] = {}
    for i, side in enumerate("ab"):
        headers, lists, bold = (int(v) for v in markdown[i])
        made |= {
            f"sum_assistant_{side}_tokens": int(tokens[i]),
            f"header_count_{side}": {f"h{h}": headers if h == 2 else 0 for h in range(1, 7)},
            f"list_count_{side}": {"ordered": lists, "unordered": 0},
            f"bold_count_{side}": {"**": bold, "__": 0},
        }
    return made


def populate(
    url: str,
    n_models: int,
    n_votes: int,
    seed: int = 1,
    *,
    judged: bool = False,
    duplicates: float = 0.0,
) -> None:
    """Models, battles and counted votes in bulk; tags as the recompute job would store them;
    with `judged`, a judge's labels on every battle, so that the judged categories (hard, math,
    instruction following, creative writing) and the "exclude refusals" views exist; with
    `duplicates`, that share of the votes held back for the duplicate-prompt limit alone, so
    that the tables without deduplication exist."""
    import psycopg
    from sqlalchemy import insert
    from sqlalchemy.engine import make_url

    from arena import migrate
    from arena.db import make_sync_engine
    from arena.models import Battle, JudgeLabel, Model, ModelStatus, Vote
    from arena.ratings.style_control import STYLE_COLUMNS

    migrate.upgrade(url)
    rng = np.random.default_rng(seed)
    engine = make_sync_engine(url)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Model),
            [
                {
                    "name": f"model-{i:03d}",
                    "organization": f"Org {i % 17}",
                    "license": ["Apache-2.0", "MIT", "Proprietary"][i % 3],
                    "base_url": "http://127.0.0.1:9/v1",
                    "upstream_model": "bench",
                    "status": ModelStatus.retired if i % 25 == 24 else ModelStatus.active,
                    "created_at": start,
                    "activated_at": start,
                    "retired_at": start + timedelta(days=3) if i % 25 == 24 else None,
                }
                for i in range(n_models)
            ],
        )
        ids = [int(i) for (i,) in conn.exec_driver_sql("SELECT id FROM model ORDER BY id")]
    engine.dispose()

    strengths = rng.normal(0.0, 1.0, n_models)
    a = rng.integers(0, n_models, n_votes)
    b = (a + rng.integers(1, n_models, n_votes)) % n_models
    p_a = 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    draw = rng.random(n_votes)
    winner = np.where(
        draw < 0.05,
        "tie",
        np.where(
            draw < 0.10, "tie (bothbad)", np.where(rng.random(n_votes) < p_a, "model_a", "model_b")
        ),
    )
    language = rng.choice(len(LANGUAGES), n_votes, p=LANGUAGE_SHARES)
    coding = rng.random(n_votes) < 0.15
    long_ = rng.random(n_votes) < 0.08
    turns = np.where(rng.random(n_votes) < 0.1, 2, 1)
    # First-prompt lengths: a fifth under five tokens (the "short prompt" view's default cut).
    prompt_tokens = np.where(rng.random(n_votes) < 0.2, rng.integers(1, 5, n_votes), 40)
    held = rng.random(n_votes)
    counted = held >= 0.02 + duplicates
    duplicate = ~counted & (held >= 0.02)
    battle_ids = [secrets.token_urlsafe(16) for _ in range(n_votes)]
    session_ids = [f"{i:064x}" for i in rng.integers(0, 2**62, 5000)]

    # Each side's style as the app stores it with the answers (conv_metadata and its sums).
    tokens = rng.lognormal(6.0, 0.8, (n_votes, 2)).astype(np.int64)
    markdown = rng.poisson((2.0, 4.0, 3.0), (n_votes, 2, 3))

    battle_given = {
        "id": None, "model_a_id": None, "model_b_id": None, "session_hash": None,
        "status": None, "turns": None, "language": None, "category_tags": None,
        "created_at": None, "ready_at": None, "conv_metadata": None,
        **dict.fromkeys(STYLE_COLUMNS), "prompt_tokens": None,
    }  # fmt: skip
    vote_given = {
        "battle_id": None, "winner": None, "session_hash": None, "created_at": None,
        "counted": None, "flags": None,
    }  # fmt: skip
    battle_extra, battle_constants = _full_rows(Battle.__table__, battle_given)
    vote_extra, vote_constants = _full_rows(Vote.__table__, vote_given)
    battle_constants = [_copy_value(v) for v in battle_constants]
    vote_constants = [_copy_value(v) for v in vote_constants]
    with psycopg.connect(make_url(url).render_as_string(hide_password=False)) as conn:
        with conn.cursor() as cur:
            columns = ", ".join([*battle_given, *battle_extra])
            with cur.copy(f"COPY battle ({columns}) FROM STDIN") as copy:
                for i in range(n_votes):
                    at = start + timedelta(seconds=i * 0.5)
                    tags = [
                        tag
                        for tag, on in (
                            ("coding", coding[i]),
                            ("long", long_[i]),
                            ("multi-turn", turns[i] > 1),
                        )
                        if on
                    ]
                    copy.write_row(
                        (
                            battle_ids[i],
                            ids[a[i]],
                            ids[b[i]],
                            session_ids[i % len(session_ids)],
                            "voted",
                            int(turns[i]),
                            LANGUAGES[language[i]],
                            json.dumps(tags),
                            at - timedelta(seconds=40),
                            at - timedelta(seconds=10),
                            json.dumps(_conv_metadata(tokens[i], markdown[i])),
                            *(
                                int(v)
                                for side in (0, 1)
                                for v in (tokens[i, side], *markdown[i, side])
                            ),
                            int(prompt_tokens[i]),
                            *battle_constants,
                        )
                    )
            columns = ", ".join([*vote_given, *vote_extra])
            with cur.copy(f"COPY vote ({columns}) FROM STDIN") as copy:
                for i in range(n_votes):
                    copy.write_row(
                        (
                            battle_ids[i],
                            str(winner[i]),
                            session_ids[i % len(session_ids)],
                            start + timedelta(seconds=i * 0.5),
                            bool(counted[i]),
                            "[]"
                            if counted[i]
                            else '["duplicate_prompt"]'
                            if duplicate[i]
                            else '["suspicious"]',
                            *vote_constants,
                        )
                    )
            if judged:
                _copy_judge_labels(cur, battle_ids, start, JudgeLabel.__table__, rng)
        conn.execute("ANALYZE")


def _copy_judge_labels(
    cur: Any, battle_ids: list[str], start: datetime, table: Any, rng: np.random.Generator
) -> None:
    """One label per battle: Arena-Hard criteria met each with probability 0.5 (so about 6% are
    "hard", six or more of seven), math 10%, instruction following 20%, creative writing 15%,
    a refusal 3%."""
    n = len(battle_ids)
    hard_score = rng.binomial(7, 0.5, n)
    flags = rng.random((n, 4)) < np.array([0.10, 0.20, 0.15, 0.03])
    given = {
        "battle_id": None, "labelled_at": None, "judge_model": None, "prompt_version": None,
        "hard_score": None, "math": None, "instruction_following": None,
        "creative_writing": None, "refusal": None,
    }  # fmt: skip
    extra, constants = _full_rows(table, given)
    constants = [_copy_value(v) for v in constants]
    columns = ", ".join([*given, *extra])
    with cur.copy(f"COPY judge_label ({columns}) FROM STDIN") as copy:
        for i in range(n):
            copy.write_row(
                (
                    battle_ids[i],
                    start + timedelta(seconds=i * 0.5 + 60),
                    "bench-judge",
                    "v1",
                    int(hard_score[i]),
                    *(bool(f) for f in flags[i]),
                    *constants,
                )
            )


# ---------------------------------------------------------------- the arena


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def arena_server(url: str, folder: Path) -> Iterator[int]:
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "ARENA_DATABASE_URL": url,
        "ARENA_DATA_DIR": str(folder),
        "ARENA_RECOMPUTE_EVERY_VOTES": str(10**9),
        "ARENA_RECOMPUTE_EVERY_SECONDS": "3600",
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "arena.app:create_app", "--factory",
            "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
        ],
        env=env,
        cwd=folder,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://{HOST}:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the arena did not start")
            time.sleep(0.2)
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=1, help="recomputes without / with fragility")
    parser.add_argument("--recompute-only", action="store_true", help="skip the page load")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/healthz", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args.port, args.path, args.concurrency, args.seconds)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sqlalchemy.orm import Session

    from arena.db import make_sync_engine
    from arena.leaderboard.battles_source import load_counted_battles
    from arena.leaderboard.snapshots import RecomputeConfig, run_recompute

    with (
        tempfile.TemporaryDirectory() as folder,
        scratch_database(ADMIN_URL, Path(folder)) as url,
    ):
        started = time.perf_counter()
        populate(url, args.models, args.votes)
        print(
            f"data: {args.models} models, {args.votes:,} votes (COPY) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        engine = make_sync_engine(url)
        with Session(engine) as session:
            started = time.perf_counter()
            battles = load_counted_battles(session)
            load_seconds = time.perf_counter() - started
        engine.dispose()
        config = RecomputeConfig(database_url=url, bootstrap_rounds=args.bootstrap)
        outcome = run_recompute(config)
        print(
            f"recompute: {outcome.n_votes:,} counted votes -> {outcome.stored} snapshots in "
            f"{outcome.seconds:.2f} s (of which loading the votes: {load_seconds:.2f} s for "
            f"{len(battles):,} rows; bootstrap {args.bootstrap} rounds)"
        )
        del battles
        # Without / with the fragility figures, alternating, so that drift hits both alike.
        timed: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.pairs):
            for fragility in (False, True):
                config = RecomputeConfig(
                    database_url=url, bootstrap_rounds=args.bootstrap, fragility=fragility
                )
                timed[fragility].append(run_recompute(config).seconds)
        without, with_ = min(timed[False]), min(timed[True])
        print(
            f"fragility figures: recompute {with_:.2f} s with, {without:.2f} s without "
            f"(best of {args.pairs}; all: {timed[True]} / {timed[False]}): "
            f"{with_ / without:.3f}x, +{with_ - without:.2f} s"
        )
        if args.recompute_only:
            return

        with arena_server(url, Path(folder)) as port:
            results = [
                measure(port, path, args.concurrency, args.seconds)
                for path in ("/healthz", "/leaderboard", "/leaderboard.csv", "/healthz")
            ]
        baseline_rps = (
            results[0]["requests"] / results[0]["seconds"]
            + results[3]["requests"] / results[3]["seconds"]
        ) / 2
        baseline_p99 = (results[0]["p99_ms"] + results[3]["p99_ms"]) / 2
        print(
            f"\n{args.concurrency} concurrent clients, {args.seconds:g} s each, keep-alive, "
            "Accept-Encoding: gzip"
        )
        print(f"{'path':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for r in results:
            rps = r["requests"] / r["seconds"]
            print(
                f"{r['path']:<20}{rps:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['errors']:>8}"
            )
        print("\ncost relative to /healthz (goal: at most 2x)")
        for r in results[1:3]:
            rps = r["requests"] / r["seconds"]
            print(
                f"{r['path']:<20} throughput {baseline_rps / rps:.2f}x slower, "
                f"p99 {r['p99_ms'] / baseline_p99:.2f}x"
            )


if __name__ == "__main__":
    main()
