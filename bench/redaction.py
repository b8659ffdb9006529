"""Redaction benchmark (issue 21): the battles export with and without PII redaction.

    PYTHONPATH=$PWD python bench/redaction.py                  # 1,000,000 battles, SQLite
    PYTHONPATH=$PWD python bench/redaction.py --battles 100000

A scratch SQLite database (in a temporary folder, deleted at the end; the embedded default and
the slower reader of the two, so the baseline is not flattered) gets --battles counted votes, each
a battle with a prompt and two answers as the battle flow stores them, bulk-inserted. The texts
are drawn from a pool shaped like chat traffic: prompts of one to four sentences, answers of six
to twenty, prose mixed with the numbers, dates, prices, versions, code and maths of
tests/leaderboard/redaction_corpus.py, and personal data planted in about one prompt in fifty.

Then, in one run, /battles.jsonl with conversations released is streamed through its real code
path (downloads.battles_jsonl: the server-side cursor over the votes, released_messages for the
texts of each batch, one JSON line per vote) twice: once with the redactor replaced by the
identity, once with arena.leaderboard.redaction.redact. It prints both times and their ratio;
the goal is at most 2.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from arena import migrate
from arena.db import make_async_engine, make_sessionmaker
from arena.leaderboard.downloads import ExportScope, Redactor, battles_jsonl
from arena.leaderboard.redaction import redact
from tests.leaderboard.redaction_corpus import MAKERS, SENTENCES, clean_sentences

WORDS = (
    "the model answer explains why this approach works better than the usual one because it "
    "keeps the data small and the steps clear so that a reader can follow each part of the "
    "argument without losing track of what matters most in practice when you build systems "
    "that people rely on every day for work study travel cooking health money and fun"
).split()
CODE = (
    "```python\ndef mean(values: list[float]) -> float:\n    if not values:\n"
    "        raise ValueError('empty')\n    return sum(values) / len(values)\n\n"
    "print(mean([1.5, 2.5, 3.0]))  # 2.3333333333333335\n```"
)


def _prose(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 24))
    return " ".join(words).capitalize() + "."


def text_pool(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Prompts and answers: prose with one sentence in three holding figures or code."""
    rng = random.Random(seed)
    figures = clean_sentences(8 * n, seed=seed)
    planted = [
        template.format(maker(rng))
        for kind, maker in MAKERS.items()
        for template in SENTENCES[kind]
        for _ in range(3)
    ]

    def sentences(count: int) -> list[str]:
        return [figures.pop() if rng.random() < 1 / 3 else _prose(rng) for _ in range(count)]

    prompts = []
    for _ in range(n):
        parts = sentences(rng.randint(1, 4))
        if rng.random() < 1 / 50:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(planted))
        prompts.append(" ".join(parts))
    answers = []
    for _ in range(n):
        parts = sentences(rng.randint(6, 20))
        if rng.random() < 0.2:
            parts.insert(rng.randrange(len(parts)), "\n\n" + CODE + "\n\n")
        answers.append(" ".join(parts))
    return prompts, answers


def populate(path: Path, n_battles: int, seed: int = 1) -> int:
    """Two models, `n_battles` battles with one turn each, and a counted vote on each."""
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    rng = random.Random(seed)
    prompts, answers = text_pool(5000, seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    text_chars = 0
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executemany(
            "INSERT INTO model (id, name, organization, license, description, base_url,"
            " upstream_model, max_tokens, temperature, system_prompt, status, status_reason,"
            " sampling_weight, consecutive_failures, created_at)"
            " VALUES (?, ?, '', '', '', 'http://127.0.0.1:9/v1', 'bench', 1024, 0.7, '',"
            " 'active', '', 1.0, 0, ?)",
            [(1, "model-a", start.isoformat()), (2, "model-b", start.isoformat())],
        )
        for first in range(0, n_battles, 50_000):
            battles, messages, votes = [], [], []
            for i in range(first, min(n_battles, first + 50_000)):
                battle_id = secrets.token_urlsafe(16)
                at = start + timedelta(seconds=i)
                stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")
                battles.append(
                    (battle_id, 1 + i % 2, 2 - i % 2, f"session-{i % 5000}", stamp, stamp)
                )
                texts = (rng.choice(prompts), rng.choice(answers), rng.choice(answers))
                text_chars += sum(len(t) for t in texts)
                for side, content in zip(("user", "a", "b"), texts, strict=True):
                    messages.append((battle_id, side, content, stamp))
                winner = rng.choice(("model_a", "model_b", "model_a", "model_b", "tie"))
                votes.append((battle_id, winner, f"session-{i % 5000}", stamp))
            conn.executemany(
                # Every visitor was shown the release notice: all texts are released.
                "INSERT INTO battle (id, model_a_id, model_b_id, session_hash, ip_hash, status,"
                " turns, language, category_tags, created_at, flags, answer_chars,"
                " notice_shown_at)"
                " VALUES (?, ?, ?, ?, '', 'voted', 1, 'English', '[]', ?, '[]', 0, ?)",
                battles,
            )
            conn.executemany(
                "INSERT INTO message (battle_id, turn, side, content, output_chunks, created_at)"
                " VALUES (?, 1, ?, ?, 0, ?)",
                messages,
            )
            conn.executemany(
                "INSERT INTO vote (battle_id, winner, session_hash, ip_hash, created_at,"
                " counted, flags) VALUES (?, ?, ?, '', ?, 1, '[]')",
                votes,
            )
        conn.execute("ANALYZE")
    return text_chars


def _unchanged(text: str) -> str:
    return text


async def export_seconds(url: str, redactor: Redactor) -> tuple[float, float, int, int]:
    """Seconds to stream the whole export (wall clock, and CPU of this process: the machine may
    be shared), its bytes and its placeholders."""
    engine = make_async_engine(url)
    sessionmaker = make_sessionmaker(engine)
    size = placeholders = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        chunks = battles_jsonl(
            sessionmaker,
            secret="bench",
            with_conversations=True,
            scope=ExportScope(),
            redactor=redactor,
        )
        async for chunk in chunks:
            size += len(chunk)
            placeholders += chunk.count(b"[EMAIL]") + chunk.count(b"[PHONE]")
        return (
            time.perf_counter() - started,
            time.process_time() - cpu_started,
            size,
            placeholders,
        )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battles", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "arena.db"
        started = time.perf_counter()
        text_chars = populate(path, args.battles)
        print(
            f"data: {args.battles:,} battles, {3 * args.battles:,} messages, "
            f"{text_chars / 1e6:,.0f} million characters of text, SQLite, in "
            f"{time.perf_counter() - started:.0f} s"
        )
        url = f"sqlite:///{path}"
        plain, plain_cpu, plain_bytes, plain_marks = asyncio.run(export_seconds(url, _unchanged))
        redacted, redacted_cpu, redacted_bytes, marks = asyncio.run(export_seconds(url, redact))
        print(
            f"/battles.jsonl, conversations released, without redaction: {plain:.1f} s "
            f"({plain_cpu:.1f} s CPU)"
        )
        print(
            f"/battles.jsonl, conversations released, with redaction:    {redacted:.1f} s "
            f"({redacted_cpu:.1f} s CPU)"
        )
        print(
            f"  {plain_bytes / 1e6:,.0f} MB -> {redacted_bytes / 1e6:,.0f} MB; "
            f"[EMAIL]/[PHONE] placeholders: {plain_marks:,} -> {marks:,}"
        )
        print(
            f"ratio with / without: {redacted / plain:.2f} (CPU: {redacted_cpu / plain_cpu:.2f}; "
            "goal: at most 2)"
        )


if __name__ == "__main__":
    main()
