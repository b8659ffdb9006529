"""Relay benchmark (issue 2): the latency the arena adds to streamed answers, against the same
upstream called directly, in one run.

    python bench/relay.py                      # about two minutes on 2 cores
    python bench/relay.py --levels 1,50 --battles 3
    python bench/relay.py --levels 200 --runs 5   # the verdict on the median of five runs

Four processes, so that the load does not starve what it measures: this one (orchestration), a
local upstream (raw asyncio on uvloop) streaming --tokens tokens, one every --pace-ms ms after a
first-token delay of the same length, the arena (`arena serve`, one uvicorn worker, SQLite in a
temporary folder, two models pointing at the upstream), and a load client (raw asyncio HTTP/1.1 on
uvloop, no HTTP library in the way).

At each level of concurrency C, C client slots run battles back to back, their starts spread over
one answer's duration; the first battle of each slot warms its connection and is not counted.
- arena: POST /api/battles, then GET /api/battles/{id}/stream; time from sending the GET to the
  first "delta" event (first token) and to the "end" event (last token);
- direct: the same slots send the two requests a battle makes (two concurrent streamed chat
  completions) straight to the upstream; time from sending them to the first content chunk of
  either and to the [DONE] of both.
It prints p50 and p99 of both, the latency the arena adds (arena minus direct, in ms) and the ratio
arena / direct. The goal: at most 5 ms added at p99 to the first token with 200 concurrent
battles. Only 127.0.0.1 is contacted; every process stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from scratch import scratch_database

HOST = "127.0.0.1"

# ---------------------------------------------------------------- the upstream


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return _chunk(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request (head and Content-Length body); False at the end of the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return True


def run_upstream(port: int, tokens: int, pace: float) -> None:
    """An OpenAI-compatible streaming endpoint that answers every request with `tokens` tokens."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n"
    )
    pieces = [_sse(f"tok{i} ") for i in range(tokens)]
    tail = _sse(None, "stop") + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await _read_request(reader):
                writer.write(head)
                for piece in pieces:
                    await asyncio.sleep(pace)
                    writer.write(piece)
                writer.write(tail)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, HOST, port, backlog=4096)
        async with server:
            await server.serve_forever()

    _run(main())


# ---------------------------------------------------------------- the load client


class Connection:
    """One keep-alive HTTP/1.1 connection: just enough of the protocol for this benchmark."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def head(self) -> tuple[int, dict[str, list[str]]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        return int(status_line.split(" ")[1]), headers

    async def body(self, headers: dict[str, list[str]]) -> bytes:
        assert self.reader is not None
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"][0]))
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> Any:
        """The pieces of a chunked body, as they arrive."""
        assert self.reader is not None
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return
            data = await self.reader.readexactly(size + 2)
            yield data[:-2]


@dataclass
class Sample:
    first_ms: float
    last_ms: float


async def _arena_battle(conn: Connection, cookie: list[str], prompt: str) -> Sample:
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie[0]
    await conn.send("POST", "/api/battles", headers, json.dumps({"prompt": prompt}).encode())
    status, response_headers = await conn.head()
    body = await conn.body(response_headers)
    if status != 201:
        raise RuntimeError(f"POST /api/battles answered {status}: {body[:300]!r}")
    for set_cookie in response_headers.get("set-cookie", []):
        cookie[:] = [set_cookie.split(";")[0]]
    battle_id = json.loads(body)["battle_id"]
    started = time.perf_counter()
    await conn.send("GET", f"/api/battles/{battle_id}/stream", {"Cookie": cookie[0]}, b"")
    status, response_headers = await conn.head()
    if status != 200:
        raise RuntimeError(f"GET stream answered {status}: {await conn.body(response_headers)!r}")
    first = last = None
    tail = b""
    async for data in conn.chunks():
        window = tail + data
        if first is None and b'"type":"delta"' in window:
            first = time.perf_counter()
        if b'"type":"end"' in window:
            if b'"status":"ready"' not in window:
                raise RuntimeError(f"battle ended badly: {window[-200:]!r}")
            last = time.perf_counter()
        tail = data[-64:]
    if first is None or last is None:
        raise RuntimeError("the stream carried no delta or no end")
    return Sample((first - started) * 1000, (last - started) * 1000)


async def _direct_side(conn: Connection, body: bytes, started: float) -> tuple[float, float]:
    await conn.send("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, body)
    status, headers = await conn.head()
    if status != 200:
        raise RuntimeError(f"upstream answered {status}")
    first = last = None
    async for data in conn.chunks():
        if first is None and b'"content"' in data:
            first = time.perf_counter()
        if b"[DONE]" in data:
            last = time.perf_counter()
    if first is None or last is None:
        raise RuntimeError("the upstream stream carried no content or no [DONE]")
    return first - started, last - started


async def _direct_battle(sides: tuple[Connection, Connection], prompt: str) -> Sample:
    body = json.dumps(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "max_tokens": 1024,
            "temperature": 0.7,
        }
    ).encode()
    started = time.perf_counter()
    results = await asyncio.gather(*(_direct_side(conn, body, started) for conn in sides))
    return Sample(min(r[0] for r in results) * 1000, max(r[1] for r in results) * 1000)


async def _load(mode: str, port: int, slots: int, battles: int, spread: float) -> dict[str, Any]:
    samples: list[Sample] = []
    failures: list[str] = []

    async def slot(index: int) -> None:
        await asyncio.sleep(spread * index / slots)
        cookie: list[str] = []
        conns = (Connection(port), Connection(port))
        for n in range(battles + 1):
            prompt = f"bench prompt {index}-{n}: how far is the moon?"
            try:
                if mode == "arena":
                    sample = await _arena_battle(conns[0], cookie, prompt)
                else:
                    sample = await _direct_battle(conns, prompt)
            except (
                RuntimeError,
                OSError,
                ValueError,
                asyncio.IncompleteReadError,
            ) as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
                for conn in conns:
                    conn.close()
                continue
            if n:  # the first battle opens the connections
                samples.append(sample)
        for conn in conns:
            conn.close()

    await asyncio.gather(*(slot(i) for i in range(slots)))
    return {
        "first_ms": [s.first_ms for s in samples],
        "last_ms": [s.last_ms for s in samples],
        "failures": failures,
    }


def run_client(mode: str, port: int, slots: int, battles: int, spread: float) -> None:
    result = _run(_load(mode, port, slots, battles, spread))
    sys.stdout.write(json.dumps(result))


# ---------------------------------------------------------------- the arena


def run_arena(profile: str | None) -> None:
    """`arena serve`, under pyinstrument (not a dependency of the arena) when a report is asked."""
    from arena.cli import main as arena_main

    sys.argv = ["arena", "serve"]
    if profile is None:
        arena_main()
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        arena_main()
    finally:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=True, show_all=False))


# ---------------------------------------------------------------- orchestration


def _run(coroutine: Any) -> Any:
    import uvloop

    return uvloop.run(coroutine)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within 120 s")


@contextmanager
def _process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose output goes to `log` (shown if the benchmark fails)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    except BaseException:
        sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}\n")
        raise
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _register_models(database_url: str, secret_key: str, upstream_port: int) -> None:
    from arena import migrate
    from arena.config import Settings
    from arena.db import make_async_engine, make_sessionmaker
    from arena.registry import service as registry
    from arena.registry.keys import KeyRing

    migrate.upgrade(database_url)
    settings = Settings(_env_file=None, database_url=database_url, secret_key=secret_key)  # type: ignore[call-arg]
    keys = KeyRing.from_settings(settings)

    async def register() -> None:
        engine = make_async_engine(database_url)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                for name in ("bench-a", "bench-b"):
                    new = registry.NewModel(
                        name=name,
                        base_url=f"http://{HOST}:{upstream_port}/v1",
                        upstream_model="bench",
                    )
                    await registry.add_model(session, new=new, keys=keys, actor="bench")
        finally:
            await engine.dispose()

    asyncio.run(register())


def _client(mode: str, port: int, slots: int, battles: int, spread: float) -> dict[str, Any]:
    args = [
        sys.executable,
        __file__,
        "client",
        mode,
        str(port),
        str(slots),
        str(battles),
    ]
    done = subprocess.run([*args, str(spread)], capture_output=True, check=False, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"the {mode} client failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _percentiles(values: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(values), [50, 99])
    return float(p50), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,50,200", help="concurrent battles, comma-separated")
    parser.add_argument("--tokens", type=int, default=24, help="tokens per answer")
    parser.add_argument("--pace-ms", type=float, default=50.0, help="ms between tokens")
    parser.add_argument("--battles", type=int, default=4, help="counted battles per slot")
    parser.add_argument(
        "--battles-alone", type=int, default=40, help="counted battles at concurrency 1"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="measure each level this many times (every run printed); with more than one, the"
        " verdict is on the median of the runs' p99 at 200",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run the arena under pyinstrument (pip install pyinstrument; not a dependency) "
        "and write its report to FILE",
    )
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="a PostgreSQL server on 127.0.0.1 (e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
        " to use instead of SQLite; a throwaway database is created on it and dropped",
    )
    options = parser.parse_args()
    levels = [int(x) for x in options.levels.split(",")]
    pace = options.pace_ms / 1000
    answer_seconds = pace * (options.tokens + 1)

    from cryptography.fernet import Fernet

    with (
        tempfile.TemporaryDirectory(prefix="arena-bench-") as folder,
        scratch_database(options.postgresql, Path(folder)) as database_url,
    ):
        secret_key = Fernet.generate_key().decode()
        upstream_port, arena_port = free_port(), free_port()
        _register_models(database_url, secret_key, upstream_port)
        env = {
            **os.environ,
            "ARENA_DATABASE_URL": database_url,
            "ARENA_DATA_DIR": folder,
            "ARENA_SECRET_KEY": secret_key,
            "ARENA_ALLOW_PRIVATE_ENDPOINTS": "true",
            "ARENA_PORT": str(arena_port),
            "ARENA_WORKERS": "1",
            # One client address sends every battle: the per-visitor limits would stop it.
            "ARENA_BATTLE_RATE_LIMIT": "",
            "ARENA_BATTLE_IP_RATE_LIMIT": "",
        }
        upstream_args = [sys.executable, __file__, "upstream", str(upstream_port)]
        arena_args = [sys.executable, __file__, "arena"]
        if options.profile:
            arena_args.append(str(Path(options.profile).resolve()))
        with (
            _process(
                [*upstream_args, str(options.tokens), str(pace)],
                Path(folder) / "upstream.log",
            ) as upstream,
            _process(arena_args, Path(folder) / "arena.log", env=env) as arena,
        ):
            _wait_listening(upstream_port, upstream, "the upstream")
            _wait_listening(arena_port, arena, "the arena")
            print(
                f"upstream: {options.tokens} tokens, {options.pace_ms:g} ms apart "
                f"(first after {options.pace_ms:g} ms); arena: one uvicorn worker, "
                + ("PostgreSQL" if options.postgresql else "SQLite")
            )
            header = (
                f"{'battles':>7} {'n':>5}  {'':5} {'direct p50':>10} {'arena p50':>9} "
                f"{'added':>7} {'ratio':>6}   {'direct p99':>10} {'arena p99':>9} "
                f"{'added':>7} {'ratio':>6}"
            )
            print(header)
            verdicts: list[float] = []
            arena_process = psutil.Process(arena.pid)
            notes: list[str] = []
            for level in [level for level in levels for _ in range(options.runs)]:
                battles = options.battles_alone if level == 1 else options.battles
                spread = answer_seconds
                direct = _client("direct", upstream_port, level, battles, spread)
                cpu_before, wall_before = arena_process.cpu_times(), time.monotonic()
                through = _client("arena", arena_port, level, battles, spread)
                cpu_after, wall = (
                    arena_process.cpu_times(),
                    time.monotonic() - wall_before,
                )
                busy = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
                done = len(through["first_ms"]) + level  # with the warm-up battles
                notes.append(
                    f"{level:>4} battles: arena worker busy {busy / wall:.0%} of one core, "
                    f"{busy / done * 1000:.1f} ms CPU per battle; failed battles: "
                    f"arena {len(through['failures'])}, direct {len(direct['failures'])}"
                    + (f" (first: {through['failures'][0]})" if through["failures"] else "")
                )
                for key, label in (("first_ms", "first"), ("last_ms", "last")):
                    d50, d99 = _percentiles(direct[key])
                    a50, a99 = _percentiles(through[key])
                    print(
                        f"{level:>7} {len(through[key]):>5}  {label:5} {d50:>10.1f} {a50:>9.1f} "
                        f"{a50 - d50:>7.1f} {a50 / d50:>6.3f}   {d99:>10.1f} {a99:>9.1f} "
                        f"{a99 - d99:>7.1f} {a99 / d99:>6.3f}"
                    )
                    if level == 200 and key == "first_ms":
                        verdicts.append(a99 - d99)
            print("(ms; added = arena - direct at the same percentile; ratio = arena / direct)")
            for note in notes:
                print(note)
            if verdicts:
                verdict = float(np.median(verdicts))
                met = "met" if verdict <= 5 else "MISSED"
                over = (
                    ""
                    if len(verdicts) == 1
                    else f", the median of {len(verdicts)} runs: "
                    + ", ".join(f"{v:.1f}" for v in verdicts)
                )
                print(
                    f"goal, at most 5 ms added at p99 to the first token at 200: {met} "
                    f"({verdict:.1f} ms{over})"
                )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "upstream":
        try:
            run_upstream(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        except KeyboardInterrupt:
            pass  # the benchmark is over
    elif len(sys.argv) > 1 and sys.argv[1] == "arena":
        run_arena(sys.argv[2] if len(sys.argv) > 2 else None)
    elif len(sys.argv) > 1 and sys.argv[1] == "client":
        mode, port, slots, battles, spread = sys.argv[2:7]
        run_client(mode, int(port), int(slots), int(battles), float(spread))
    else:
        main()
