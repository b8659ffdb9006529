"""Votes per second over HTTP (issue 5): PostgreSQL and SQLite, 50 concurrent clients on loopback.

    python bench/votes.py                   # both databases, about a minute and a half
    python bench/votes.py --backends postgresql --pg-workers 2 --seconds 10

For each database:
1. a scratch database (PostgreSQL: a new database on ARENA_BENCH_DATABASE_URL's server; SQLite: a
   file in a temporary folder), migrated, with two models and enough battles that are ready to be
   voted on, each owned by its own visitor session (inserted directly: the benchmark measures
   votes, not upstream answers);
2. `arena serve --workers N` in a subprocess, rate limits per session on (as in production) and
   per address off (every client here is 127.0.0.1), the rating recompute and the rigging scan
   deferred past the run (they run in their own process or task, not on the vote path);
3. a load client in another process (raw HTTP/1.1 keep-alive connections on uvloop, so that the
   client costs as little CPU as possible on this shared machine): /healthz for the baseline, then
   one vote per battle, each connection taking the next battle;
4. every vote answered 200 is looked up in the database afterwards: found must equal acknowledged.

It prints requests per second, p50 / p99 latency, the arena's CPU time per request (all its
processes, read from /proc at the start and end of each phase: less sensitive than throughput to
other load on the machine), the ratios to /healthz, how busy the whole machine was (the database,
Redis and the load client share its cores with the arena), and the acknowledged and found counts.
Traffic goes to 127.0.0.1 only; every phase stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
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
GOAL_VOTES_PER_SECOND = 1000
SESSION_COOKIE = "arena_session"

# ---------------------------------------------------------------- the load client


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _healthz_connection(
    port: int, stop_at: float, latencies: list[float], errors: list[str]
) -> None:
    request = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status != b"200":
                errors.append(status.decode())
    finally:
        writer.close()


async def _vote_connection(
    port: int,
    battles: list[tuple[str, str]],
    stop_at: float,
    latencies: list[float],
    acknowledged: list[str],
    errors: list[str],
) -> None:
    body = b'{"winner":"model_a"}'
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while battles and time.perf_counter() < stop_at:
            battle_id, cookie = battles.pop()
            request = (
                f"POST /api/battles/{battle_id}/vote HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Cookie: {SESSION_COOKIE}={cookie}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status == b"200":
                acknowledged.append(battle_id)
            else:
                errors.append(status.decode())
    finally:
        writer.close()


def arena_cpu_seconds(server_pid: int) -> float:
    """CPU time used so far by the arena: the uvicorn process and its workers."""
    import psutil

    root = psutil.Process(server_pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU time spent by every process on the machine so far (all cores, from /proc/stat)."""
    import psutil

    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _summary(
    latencies: list[float],
    seconds: float,
    errors: list[str],
    cpu_seconds: float,
    machine_seconds: float,
) -> dict[str, Any]:
    return {
        "machine_cores_busy": machine_seconds / seconds,
        "machine_cpu_ms_per_request": 1000 * machine_seconds / len(latencies)
        if latencies
        else None,
        "cpu_ms_per_request": 1000 * cpu_seconds / len(latencies) if latencies else None,
        "requests": len(latencies),
        "per_second": len(latencies) / seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None,
        "errors": sorted(set(errors)),
        "error_count": len(errors),
    }


async def _phase(
    server_pid: int,
    connection: Callable[[float], Awaitable[None]],
    concurrency: int,
    seconds: float,
    latencies: list[float],
    errors: list[str],
) -> dict[str, Any]:
    """`concurrency` connections for `seconds`, with the CPU the arena and the machine spent."""
    cpu, machine = arena_cpu_seconds(server_pid), machine_busy_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(connection(started + seconds) for _ in range(concurrency)))
    return _summary(
        latencies,
        time.perf_counter() - started,
        errors,
        arena_cpu_seconds(server_pid) - cpu,
        machine_busy_seconds() - machine,
    )


async def _client(
    port: int,
    server_pid: int,
    concurrency: int,
    seconds: float,
    battles_file: str,
    acked_file: str,
) -> dict[str, Any]:
    # Warm-up: open connections, let every worker load its code paths; not counted.
    ignored: list[float] = []
    await asyncio.gather(
        *(
            _healthz_connection(port, time.perf_counter() + 1.0, ignored, [])
            for _ in range(concurrency)
        )
    )
    latencies: list[float] = []
    errors: list[str] = []
    healthz = await _phase(
        server_pid,
        lambda stop_at: _healthz_connection(port, stop_at, latencies, errors),
        concurrency,
        seconds,
        latencies,
        errors,
    )

    battles = [tuple(line.split()) for line in Path(battles_file).read_text().splitlines()]
    pending: list[tuple[str, str]] = [(b, c) for b, c in battles]
    latencies, errors = [], []
    acknowledged: list[str] = []
    votes = await _phase(
        server_pid,
        lambda stop_at: _vote_connection(port, pending, stop_at, latencies, acknowledged, errors),
        concurrency,
        seconds,
        latencies,
        errors,
    )
    votes["battles_left"] = len(pending)
    Path(acked_file).write_text("\n".join(acknowledged))
    return {"healthz": healthz, "votes": votes}


def run_client(args: argparse.Namespace) -> None:
    import uvloop

    uvloop.install()
    result = asyncio.run(
        _client(
            args.port,
            args.server_pid,
            args.concurrency,
            args.seconds,
            args.battles_file,
            args.acked_file,
        )
    )
    print(json.dumps(result))


# ---------------------------------------------------------------- the database


def populate(url: str, secret: str, n_battles: int, battles_file: Path) -> None:
    """Two models and `n_battles` ready battles, each owned by a session of its own."""
    from sqlalchemy import insert

    from arena import migrate
    from arena.db import make_sync_engine
    from arena.models import Battle, BattleStatus, Model, ModelStatus
    from arena.visitors import salted_hash

    migrate.upgrade(url)
    engine = make_sync_engine(url)
    # Read long ago, but still inside the vote window.
    shown = datetime.now(UTC) - timedelta(minutes=10)
    with engine.begin() as conn:
        model_ids = [
            conn.execute(
                insert(Model)
                .values(
                    name=name,
                    organization=org,
                    base_url="http://127.0.0.1:9/v1",
                    upstream_model="bench",
                    status=ModelStatus.active,
                    created_at=shown,
                    activated_at=shown,
                )
                .returning(Model.id)
            ).scalar_one()
            for name, org in (("bench-alpha", "Alpha Labs"), ("bench-beta", "Beta Inc"))
        ]
    ip_hash = salted_hash(secret, "ip:" + HOST)
    lines = []
    rows = []
    for i in range(n_battles):
        battle_id = f"b{i:07d}{secrets.token_hex(6)}"
        cookie = secrets.token_urlsafe(24)
        lines.append(f"{battle_id} {cookie}")
        rows.append(
            {
                "id": battle_id,
                "model_a_id": model_ids[i % 2],
                "model_b_id": model_ids[1 - i % 2],
                "session_hash": salted_hash(secret, "session:" + cookie),
                "ip_hash": ip_hash,
                "status": BattleStatus.ready,
                "turns": 1,
                "language": "",
                "category_tags": [],
                "flags": [],
                "answer_chars": 400,
                "created_at": shown,
                "stream_started_at": shown,
                "ready_at": shown,
            }
        )
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(Battle), rows[start : start + 5000])
    engine.dispose()
    battles_file.write_text("\n".join(lines))


def stored_votes(url: str, battle_ids: list[str]) -> tuple[int, int, int]:
    """(votes in the database, acknowledged ones among them, counted ones)."""
    from sqlalchemy import func, select

    from arena.db import make_sync_engine
    from arena.models import Vote

    engine = make_sync_engine(url)
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(Vote)) or 0
        counted = conn.scalar(select(func.count()).select_from(Vote).where(Vote.counted)) or 0
        found = 0
        for start in range(0, len(battle_ids), 1000):
            chunk = battle_ids[start : start + 1000]
            found += (
                conn.scalar(select(func.count()).select_from(Vote).where(Vote.battle_id.in_(chunk)))
                or 0
            )
    engine.dispose()
    return int(total), int(found), int(counted)


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def arena_server(
    url: str, secret: str, workers: int, folder: Path, redis_url: str
) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    env.update(
        {
            "ARENA_DATABASE_URL": url,
            "ARENA_SECRET_KEY": secret,
            "ARENA_DATA_DIR": str(folder),
            "ARENA_BATTLE_IP_RATE_LIMIT": "",
            "ARENA_VOTE_IP_RATE_LIMIT": "",
            "ARENA_RECOMPUTE_EVERY_VOTES": str(10**9),
            "ARENA_RECOMPUTE_EVERY_SECONDS": str(10**6),
            "ARENA_RIGGING_SCAN_SECONDS": "0",
            "ARENA_HEALTH_PROBE_SECONDS": "0",
        }
    )
    if workers > 1 and redis_url:
        # Several workers share their rate-limit counters through Redis, as in production.
        env["ARENA_REDIS_URL"] = redis_url
        env["ARENA_RATE_LIMIT_KEY_PREFIX"] = f"arena-bench-{uuid.uuid4().hex[:8]}"
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from arena.cli import main; main()",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        import httpx

        while True:
            if process.poll() is not None:
                raise RuntimeError((folder / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the arena did not start within 60 s")
            time.sleep(0.1)
        time.sleep(1.0 if workers > 1 else 0.2)  # let every worker finish its start-up
        yield port, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def measure(backend: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    from cryptography.fernet import Fernet

    secret = Fernet.generate_key().decode()
    with tempfile.TemporaryDirectory(prefix="arena-votes-") as tmp:
        folder = Path(tmp)
        battles_file, acked_file = folder / "battles.txt", folder / "acked.txt"
        with scratch_database(ADMIN_URL if backend == "postgresql" else None, folder) as url:
            populate(url, secret, args.battles, battles_file)
            with arena_server(url, secret, workers, folder, args.redis_url) as (port, pid):
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--client",
                        "--port",
                        str(port),
                        "--server-pid",
                        str(pid),
                        "--concurrency",
                        str(args.concurrency),
                        "--seconds",
                        str(args.seconds),
                        "--battles-file",
                        str(battles_file),
                        "--acked-file",
                        str(acked_file),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=3 * args.seconds + 120,
                    check=True,
                )
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            acknowledged = [line for line in acked_file.read_text().splitlines() if line]
            total, found, counted = stored_votes(url, acknowledged)
    result.update(
        backend=backend,
        workers=workers,
        limiter="redis" if workers > 1 and args.redis_url else "memory",
        acknowledged=len(acknowledged),
        stored=total,
        found=found,
        counted=counted,
    )
    return result


def report(result: dict[str, Any]) -> None:
    healthz, votes = result["healthz"], result["votes"]
    ratio = votes["per_second"] / healthz["per_second"]
    print(
        f"\n{result['backend']}, {result['workers']} worker(s), "
        f"{result['concurrency']} concurrent clients, {result['seconds']:.0f} s per phase, "
        f"rate limits in {result['limiter']}"
    )
    print(
        f"  /healthz  {healthz['per_second']:8.0f} req/s   p50 {healthz['p50_ms']:6.1f} ms"
        f"   p99 {healthz['p99_ms']:6.1f} ms   arena CPU {healthz['cpu_ms_per_request']:.2f} ms"
        f"/request   errors {healthz['error_count']}"
    )
    print(
        f"  votes     {votes['per_second']:8.0f} req/s   p50 {votes['p50_ms']:6.1f} ms"
        f"   p99 {votes['p99_ms']:6.1f} ms   arena CPU {votes['cpu_ms_per_request']:.2f} ms"
        f"/request   errors {votes['error_count']} {votes['errors']}"
    )
    cpu_ratio = votes["cpu_ms_per_request"] / healthz["cpu_ms_per_request"]
    print(
        f"  ratio votes/s : /healthz req/s = {ratio:.2f}; arena CPU per vote : per /healthz"
        f" = {cpu_ratio:.2f}"
    )
    machine_ms = votes["machine_cpu_ms_per_request"]
    print(
        "  whole machine (arena, database, Redis, load client): "
        f"{healthz['machine_cores_busy']:.2f} of {os.cpu_count()} cores busy for /healthz, "
        f"{votes['machine_cores_busy']:.2f} for votes; {machine_ms:.2f} ms CPU per vote "
        f"({machine_ms - votes['cpu_ms_per_request']:.2f} ms outside the arena)"
    )
    same = result["found"] == result["acknowledged"] == result["stored"]
    print(
        f"  acknowledged {result['acknowledged']}, in the database {result['stored']} "
        f"(of them acknowledged {result['found']}, counted {result['counted']}): "
        + ("none lost" if same else "MISMATCH")
    )
    if votes["battles_left"] == 0:
        print("  note: every seeded battle was voted on before the time was up; seed more")
    if result["backend"] == "postgresql" and result["workers"] == 2:
        verdict = "met" if votes["per_second"] >= GOAL_VOTES_PER_SECOND else "missed"
        print(f"  goal >= {GOAL_VOTES_PER_SECOND} votes/s on PostgreSQL, 2 workers: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--battles-file", default="", help=argparse.SUPPRESS)
    parser.add_argument("--acked-file", default="", help=argparse.SUPPRESS)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--pg-workers", type=int, default=2)
    parser.add_argument("--sqlite-workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--battles", type=int, default=40_000)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ARENA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="rate-limit counters for runs with several workers ('' for per-worker memory)",
    )
    args = parser.parse_args()
    if args.client:
        run_client(args)
        return
    for backend in args.backends.split(","):
        workers = args.pg_workers if backend == "postgresql" else args.sqlite_workers
        result = measure(backend, workers, args)
        result.update(concurrency=args.concurrency, seconds=args.seconds)
        report(result)
        if result["found"] != result["acknowledged"] or result["stored"] != result["acknowledged"]:
            sys.exit("acknowledged votes are missing from the database")


if __name__ == "__main__":
    main()
