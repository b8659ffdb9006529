"""The data exports as Parquet: the JSON Lines rows, written and sent a row group at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.leaderboard.downloads import (
    ExportBatch,
    ExportedVote,
    ExportScope,
    battle_record,
    export_batches,
    preference_pair,
)
from arena.leaderboard.export_fields import (
    PREFERENCE_FIELDS,
    ExportField,
    arrow_schema,
    battle_fields,
)
from arena.models import Message

PARQUET_TYPE: Final = "application/vnd.apache.parquet"
# A row group is what a reader decodes at once and what is held here before it is sent:
# 64k rows of the battle columns take a few megabytes.
ROW_GROUP_ROWS: Final = 65_536
# Released conversations can be long; a row group also closes after this many characters of
# text, so memory stays bounded whatever the visitors and the models wrote.
ROW_GROUP_TEXT_CHARS: Final = 16 * 1024 * 1024

Record = dict[str, Any]


class _DrainedSink:
    """A write-only file for ParquetWriter whose bytes are taken out as soon as they are written."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False  # pyarrow reads it; the writer never closes a sink it was given

    def write(self, data: bytes | memoryview) -> int:
        part = bytes(data)
        self._parts.append(part)
        self._position += len(part)
        return len(part)

    def tell(self) -> int:
        return self._position

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        taken = b"".join(self._parts)
        self._parts.clear()
        return taken


class _RowGroup:
    """Records gathered column by column until there are enough for one row group."""

    def __init__(self, fields: Sequence[ExportField]) -> None:
        self._names = [f.name for f in fields]
        self._texts = [f.name for f in fields if f.type == "conversation"]
        self.columns: dict[str, list[Any]] = {name: [] for name in self._names}
        self.rows = 0
        self.text_chars = 0

    def add(self, record: Record) -> None:
        for name in self._names:
            self.columns[name].append(record[name])
        for name in self._texts:
            self.text_chars += sum(len(m["content"]) for m in record[name])
        self.rows += 1

    def full(self) -> bool:
        return self.rows >= ROW_GROUP_ROWS or self.text_chars >= ROW_GROUP_TEXT_CHARS

    def take(self) -> dict[str, list[Any]]:
        columns = self.columns
        self.columns = {name: [] for name in self._names}
        self.rows = self.text_chars = 0
        return columns


class _ParquetStream:
    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema
        self._sink = _DrainedSink()
        self._writer = pq.ParquetWriter(self._sink, schema)
        self._open = True

    def write(self, columns: dict[str, list[Any]]) -> bytes:
        table = pa.Table.from_pydict(columns, schema=self._schema)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        return self._sink.take()

    def finish(self, columns: dict[str, list[Any]]) -> bytes:
        written = self.write(columns) if any(columns.values()) else b""
        self._writer.close()  # the footer: the schema and where each row group is
        self._open = False
        return written + self._sink.take()

    def abandon(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False


async def parquet_chunks(
    records: AsyncIterator[list[Record]], fields: Sequence[ExportField]
) -> AsyncIterator[bytes]:
    """One Parquet file of `fields`, as bytes to send: a chunk per row group, then the footer.

    Encoding a row group takes tens of milliseconds, so it runs in a worker thread while the
    event loop serves other requests; at most one row group is held at a time.
    """
    stream = _ParquetStream(arrow_schema(tuple(fields)))
    group = _RowGroup(fields)
    try:
        async for batch in records:
            for record in batch:
                group.add(record)
                if group.full():
                    yield await asyncio.to_thread(stream.write, group.take())
        yield await asyncio.to_thread(stream.finish, group.take())
    finally:
        stream.abandon()


async def _records(
    batches: AsyncIterator[ExportBatch],
    record: Callable[[ExportedVote, dict[str, list[Message]]], Record],
) -> AsyncIterator[list[Record]]:
    async for batch, texts in batches:
        yield [record(vote, texts) for vote in batch]


async def battles_parquet(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    secret: str,
    with_conversations: bool,
    scope: ExportScope,
) -> AsyncIterator[bytes]:
    """The rows of battles_jsonl, same columns in the same order, as one Parquet file."""
    batches = export_batches(
        sessionmaker, secret=secret, scope=scope, with_conversations=with_conversations
    )

    def record(vote: ExportedVote, texts: dict[str, list[Message]]) -> Record:
        return battle_record(vote, texts.get(vote.battle_id, []) if with_conversations else None)

    async for chunk in parquet_chunks(_records(batches, record), battle_fields(with_conversations)):
        yield chunk


async def preferences_parquet(
    sessionmaker: async_sessionmaker[AsyncSession], *, secret: str
) -> AsyncIterator[bytes]:
    """The preference pairs of preferences_jsonl as one Parquet file."""
    batches = export_batches(
        sessionmaker,
        secret=secret,
        scope=ExportScope(),
        with_conversations=True,
        decisive_only=True,
    )

    def record(vote: ExportedVote, texts: dict[str, list[Message]]) -> Record:
        return preference_pair(vote, texts.get(vote.battle_id, []))

    async for chunk in parquet_chunks(_records(batches, record), PREFERENCE_FIELDS):
        yield chunk
