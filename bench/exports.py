"""Exports benchmark (issue 21): /battles.parquet against /battles.jsonl, time and server memory.

    python bench/exports.py                       # 1,000,000 votes, a few minutes on 2 cores
    python bench/exports.py --votes 200000
    python bench/exports.py --votes 200000 --labelled   # every battle labelled by a judge

A scratch PostgreSQL database (created here, dropped at the end) gets --votes counted votes
(bench/leaderboard.py's `populate`, loaded with COPY); the arena runs under uvicorn in a
subprocess, and once its startup recompute has stored the tables, each export is downloaded
whole, in the order JSON Lines, Parquet, CSV, JSON Lines, Parquet (with --labelled, every
battle carries a judge's labels first: the longest rows, a category_tag in each). For each it
prints seconds to the last byte, megabytes, rows per second and the server's peak resident
memory during the download above its resident memory before it (sampled every 20 ms). The
ratios are Parquet against JSON Lines (the mean of both runs of each), the baseline measured in
the same run. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from leaderboard import ADMIN_URL, HOST, arena_server, populate
from scratch import scratch_database

PATHS = ("/battles.jsonl", "/battles.parquet", "/battles.csv", "/battles.jsonl", "/battles.parquet")


def label_every_battle(url: str) -> None:
    """A judge's labels on every battle, as the labeller stores them (criteria names and their
    count, the four flags, the judge and prompt version): a third of them hard prompts."""
    import psycopg
    from sqlalchemy.engine import make_url

    from arena.judge.verdict import CRITERIA, PROMPT_VERSION

    every = json.dumps(list(CRITERIA))
    some = json.dumps(list(CRITERIA[:2]))
    with psycopg.connect(make_url(url).render_as_string(hide_password=False)) as conn:
        conn.execute(
            "INSERT INTO judge_label (battle_id, queued_at, next_attempt_at, attempts, stale,"
            " labelled_at, judge_model, prompt_version, criteria, hard_score, math,"
            " instruction_following, creative_writing, refusal)"
            " SELECT id, now(), now(), 1, false, now(), 'bench-judge', %s,"
            " CAST(CASE WHEN hard THEN %s ELSE %s END AS json), CASE WHEN hard THEN %s ELSE 2 END,"
            " random() < 0.2, random() < 0.3, random() < 0.1, random() < 0.05"
            " FROM (SELECT id, random() < 0.33 AS hard FROM battle) AS drawn",
            (PROMPT_VERSION, every, some, len(CRITERIA)),
        )
        conn.execute("ANALYZE judge_label")


def _server_process() -> Any:
    import psutil

    # uvicorn itself: the recompute's worker process is its child, not ours.
    children = psutil.Process().children()
    if len(children) != 1:
        raise RuntimeError(f"expected the arena server as the one child, found {children}")
    return children[0]


def wait_for_first_snapshot(port: int) -> float:
    """Seconds until the startup recompute stored its tables: downloads measured while it runs
    would share the two cores with it."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < 1800:
        board = httpx.get(f"http://{HOST}:{port}/api/leaderboard", timeout=60).json()
        if board.get("snapshot") is not None:
            return time.perf_counter() - started
        time.sleep(2)
    raise SystemExit("no leaderboard snapshot after 30 minutes")


def download(port: int, path: str) -> dict[str, Any]:
    import httpx

    server = _server_process()
    idle = server.memory_info().rss
    peak = idle
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    body = io.BytesIO()
    started = time.perf_counter()
    with (
        httpx.Client(timeout=600) as client,
        client.stream("GET", f"http://{HOST}:{port}{path}") as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw():
            body.write(chunk)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    return {
        "path": path,
        "seconds": seconds,
        "bytes": body.tell(),
        "rows": _rows(path, body),
        "memory": peak - idle,
    }


def _rows(path: str, body: io.BytesIO) -> int:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        body.seek(0)
        return int(pq.ParquetFile(body).metadata.num_rows)
    lines = body.getvalue().count(b"\n")
    return lines - 1 if path.endswith(".csv") else lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--labelled", action="store_true", help="label every battle first")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    with (
        tempfile.TemporaryDirectory() as folder,
        scratch_database(ADMIN_URL, Path(folder)) as url,
    ):
        started = time.perf_counter()
        populate(url, args.models, args.votes)
        if args.labelled:
            label_every_battle(url)
        print(
            f"data: {args.models} models, {args.votes:,} votes (COPY)"
            f"{', every battle labelled' if args.labelled else ''} in "
            f"{time.perf_counter() - started:.1f} s"
        )
        with arena_server(url, Path(folder)) as port:
            waited = wait_for_first_snapshot(port)
            print(f"startup recompute finished after {waited:.0f} s; downloads start now")
            results = [download(port, path) for path in PATHS]
    rows = {r["rows"] for r in results}
    if len(rows) != 1:
        raise SystemExit(f"the exports disagree on the number of rows: {sorted(rows)}")
    print(f"\n{'export':<20}{'s':>8}{'MB':>10}{'rows/s':>12}{'peak RSS +MB':>14}")
    for r in results:
        print(
            f"{r['path']:<20}{r['seconds']:>8.2f}{r['bytes'] / 1e6:>10.1f}"
            f"{r['rows'] / r['seconds']:>12,.0f}{r['memory'] / 1e6:>14.1f}"
        )

    def mean(path: str, key: str) -> float:
        values = [r[key] for r in results if r["path"] == path]
        return float(sum(values) / len(values))

    jsonl_s, parquet_s = mean("/battles.jsonl", "seconds"), mean("/battles.parquet", "seconds")
    jsonl_b, parquet_b = mean("/battles.jsonl", "bytes"), mean("/battles.parquet", "bytes")
    print(
        f"\n{rows.pop():,} rows. Parquet / JSON Lines: time {parquet_s / jsonl_s:.2f}x, "
        f"size {parquet_b / jsonl_b:.2f}x; server peak memory above idle "
        f"{mean('/battles.parquet', 'memory') / 1e6:.0f} MB (Parquet) vs "
        f"{mean('/battles.jsonl', 'memory') / 1e6:.0f} MB (JSON Lines)"
    )


if __name__ == "__main__":
    main()
