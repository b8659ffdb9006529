"""The data exports as Parquet: the JSON Lines rows, written and sent a row group at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.leaderboard.downloads import (
    ExportBatch,
    ExportedVote,
    ExportScope,
    ReleasedTexts,
    battle_record,
    export_batches,
    preference_pairs,
)
from arena.leaderboard.export_fields import (
    PREFERENCE_FIELDS,
    ExportField,
    arrow_schema,
    battle_fields,
)
from arena.leaderboard.schemas import LeaderboardRowOut

PARQUET_TYPE: Final = "application/vnd.apache.parquet"
# A row group is what a reader decodes at once and what is held here before it is sent: a whole
# number of the row source's batches (downloads.BATCH rows each), kept in Arrow's compact form.
ROW_GROUP_ROWS: Final = 64_000
# Released conversations can be long; a row group also closes at this many bytes of Arrow data,
# so memory stays bounded whatever the visitors and the models wrote.
ROW_GROUP_BYTES: Final = 64 * 1024 * 1024

Record = dict[str, Any]

_UTC_TIME: Final = pa.timestamp("us", tz="UTC")
# The columns of /leaderboard.csv, in its order; a rating left without an interval is null.
LEADERBOARD_SCHEMA: Final = pa.schema(
    [
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("rating", pa.float64(), nullable=False),
        pa.field("ci_lower", pa.float64()),
        pa.field("ci_upper", pa.float64()),
        pa.field("votes", pa.int64(), nullable=False),
        pa.field("win_rate", pa.float64()),
        pa.field("swap_votes", pa.int64()),
        pa.field("first_place_votes", pa.int64()),
        pa.field("organization", pa.string(), nullable=False),
        pa.field("license", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("activated_at", _UTC_TIME),
        pa.field("paused_at", _UTC_TIME),
        pa.field("retired_at", _UTC_TIME),
        pa.field("rank_change", pa.int64()),
    ]
)


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


class _ParquetStream:
    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema
        self._sink = _DrainedSink()
        self._writer = pq.ParquetWriter(self._sink, schema)

    def write(self, batches: list[pa.RecordBatch]) -> bytes:
        """One row group of `batches`; the bytes of its column chunks."""
        table = pa.Table.from_batches(batches, schema=self._schema)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        return self._sink.take()

    def finish(self, batches: list[pa.RecordBatch]) -> bytes:
        written = self.write(batches) if batches else b""
        self._writer.close()  # the footer: the schema and where each row group is
        return written + self._sink.take()


async def parquet_chunks(
    records: AsyncIterator[list[Record]], fields: Sequence[ExportField]
) -> AsyncIterator[bytes]:
    """One Parquet file of `fields`, as bytes to send: a chunk per row group, then the footer.

    Each batch of records becomes Arrow columns at once (no Python objects outlive their batch);
    encoding a row group takes tens of milliseconds, so it runs in a worker thread while the
    event loop serves other requests. At most one row group is held at a time.
    """
    schema = arrow_schema(tuple(fields))
    stream = _ParquetStream(schema)
    held: list[pa.RecordBatch] = []
    rows = size = 0
    # A download cut short leaves the writer to the garbage collector, not closed here: a row
    # group may still be encoding in its thread, and the writer is not thread-safe.
    async for batch in records:
        if not batch:
            continue
        columns = pa.RecordBatch.from_pylist(batch, schema=schema)
        held.append(columns)
        rows += columns.num_rows
        size += columns.nbytes
        if rows >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
            yield await asyncio.to_thread(stream.write, held)
            held, rows, size = [], 0, 0
    yield await asyncio.to_thread(stream.finish, held)


async def _records(
    batches: AsyncIterator[ExportBatch],
    rows: Callable[[list[ExportedVote], ReleasedTexts | None], list[Record]],
) -> AsyncIterator[list[Record]]:
    async for batch, texts in batches:
        yield rows(batch, texts)


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

    def rows(batch: list[ExportedVote], texts: ReleasedTexts | None) -> list[Record]:
        return [battle_record(vote, texts) for vote in batch]

    async for chunk in parquet_chunks(_records(batches, rows), battle_fields(with_conversations)):
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
    async for chunk in parquet_chunks(_records(batches, preference_pairs), PREFERENCE_FIELDS):
        yield chunk


def leaderboard_parquet(
    rows: Sequence[LeaderboardRowOut],
    metadata: Mapping[str, str],
    first_place: tuple[str, int | None] | None = None,
) -> bytes:
    """One leaderboard table as a Parquet file, with `metadata` (the snapshot's) in its footer;
    the columns of /leaderboard.csv, `first_place_votes` on the leader's row (`first_place`:
    the leader and the votes that hold it).

    A table has one row per model, so it is written whole: nothing to stream.
    """

    def value(row: LeaderboardRowOut, name: str) -> Any:
        if name == "first_place_votes":
            return first_place[1] if first_place and first_place[0] == row.model else None
        return getattr(row, name)

    columns = {name: [value(row, name) for row in rows] for name in LEADERBOARD_SCHEMA.names}
    table = pa.Table.from_pydict(columns, schema=LEADERBOARD_SCHEMA.with_metadata(dict(metadata)))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    written: bytes = sink.getvalue().to_pybytes()
    return written
