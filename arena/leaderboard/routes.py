"""Leaderboard pages, model pages and the open-data downloads: thin; reading lives in service.py."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.battles import integrity, sampling_stats
from arena.db import SessionDep
from arena.errors import InvalidInput
from arena.judge.endpoint import judge_name
from arena.leaderboard import dataset_card, downloads, pages, parquet_export, service
from arena.leaderboard.cache import PageCache, Rendered
from arena.leaderboard.downloads import ExportScope
from arena.leaderboard.export_fields import PREFERENCE_FIELDS, battle_fields
from arena.leaderboard.schemas import LeaderboardOut, MatricesOut, ModelOut

router = APIRouter(tags=["leaderboard"])

CategoryQuery = Annotated[
    str | None,
    Query(description="all, coding, long, multi-turn or language:NAME", max_length=64),
]
MethodQuery = Annotated[
    str | None,
    Query(
        description="bt (default), bt-bootstrap when configured, bt-style (controlled for answer"
        " length and Markdown), bt-style-bootstrap when configured, or elo",
        max_length=24,
    ),
]
ExcludeQuery = Annotated[
    str | None,
    Query(
        description="exclusions applied before rating, comma-separated: ties, short"
        " (prompts under ARENA_SHORT_PROMPT_TOKENS tokens), refusals (when judged)",
        max_length=64,
    ),
]
DedupQuery = Annotated[
    Literal["on", "off"] | None,
    Query(
        description="off: rate the votes held back for a prompt used more often than"
        " ARENA_DUPLICATE_PROMPT_LIMIT too (FastChat's dedup_tag sampled: false); on (default):"
        " the counted votes only"
    ),
]
RetiredQuery = Annotated[
    Literal["show", "hide"] | None,
    Query(description="show: list retired models (with their dates); hidden by default"),
]
CompareQuery = Annotated[
    str | None,
    Query(
        description="a method whose table the rank_change column compares against", max_length=24
    ),
]
SortQuery = Annotated[str | None, Query(max_length=16)]
OrderQuery = Annotated[str | None, Query(max_length=4)]

CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"
JSONL_TYPE = "application/x-ndjson; charset=utf-8"
MATRIX_TABLES = ("win-fraction", "battle-count", "predicted-win", "sampling-share")


def _cache(request: Request) -> PageCache:
    cache: PageCache = request.app.state.leaderboard_cache
    return cache


def _bootstrap_settings(request: Request) -> dict[str, int]:
    """The bootstrap settings, which decide the methods the recompute stores tables of."""
    settings = request.app.state.settings
    return {
        "bootstrap_rounds": int(settings.bootstrap_rounds),
        "style_bootstrap_rounds": int(settings.style_bootstrap_rounds),
    }


def _respond(
    request: Request, rendered: Rendered, *, extra: dict[str, str] | None = None
) -> Response:
    headers = {**rendered.headers, **(extra or {})}
    headers["Vary"] = "Accept-Encoding"
    if rendered.etag:
        headers["ETag"] = rendered.etag
        if request.headers.get("if-none-match") == rendered.etag:
            return Response(status_code=304, headers=headers)
    accepts_gzip = "gzip" in request.headers.get("accept-encoding", "")
    if rendered.gzipped is not None and accepts_gzip:
        headers["Content-Encoding"] = "gzip"
        return Response(
            rendered.gzipped, rendered.status_code, headers=headers, media_type=rendered.media_type
        )
    return Response(
        rendered.body, rendered.status_code, headers=headers, media_type=rendered.media_type
    )


async def _cached(
    request: Request,
    session: AsyncSession,
    key: tuple[Any, ...],
    build: Callable[[], Awaitable[Rendered]],
) -> Rendered:
    cache = _cache(request)
    generation = await cache.generation(lambda: service.data_generation(session))
    return await cache.get(key, generation, build)


def snapshot_headers(view: service.BoardView) -> dict[str, str]:
    snapshot = view.snapshot
    headers = {
        "X-Arena-Method": view.method,
        "X-Arena-Category": view.category,
        "X-Arena-View": view.choice.key,
        "X-Arena-Retired": "shown" if view.choice.show_retired else "hidden",
    }
    if view.compared is not None:
        headers["X-Arena-Compared-Snapshot-Id"] = str(view.compared.id)
        headers["X-Arena-Compare"] = view.compared.method
    if snapshot is None:
        headers["X-Arena-Snapshot"] = "none"
        return headers
    headers.update(
        {
            "X-Arena-Snapshot-Id": str(snapshot.id),
            "X-Arena-Snapshot-Time": snapshot.computed_at.isoformat(),
            "X-Arena-Vote-Set-Hash": snapshot.vote_set_hash,
            "X-Arena-Votes": str(snapshot.n_votes),
            "X-Arena-Params": json.dumps(snapshot.params, sort_keys=True, separators=(",", ":")),
        }
    )
    return headers


def view_choice(
    exclude: str | None, retired: str | None, compare: str | None, dedup: str | None = None
) -> service.ViewChoice:
    return service.ViewChoice(
        exclude=tuple(part.strip() for part in (exclude or "").split(",") if part.strip()),
        show_retired=retired == "show",
        compare=compare or None,
        keep_duplicates=dedup == "off",
    )


async def _board_view(
    request: Request,
    session: AsyncSession,
    method: str | None,
    category: str | None,
    choice: service.ViewChoice | None = None,
) -> service.BoardView:
    return await service.board_view(
        session,
        method=method,
        category=category,
        choice=choice,
        **_bootstrap_settings(request),
    )


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "table"


def _table_name(view: service.BoardView) -> str:
    """method-category, then -without-EXCLUSIONS for a view that applies some, then
    -with-duplicates for one that keeps them."""
    name = f"{_file_part(view.method)}-{_file_part(view.category)}"
    if view.choice.exclude:
        name += "-without-" + "-".join(view.choice.exclude)
    if view.choice.keep_duplicates:
        name += "-with-duplicates"
    return name


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


# ------------------------------------------------------------------ pages


@router.get("/leaderboard", response_class=HTMLResponse, include_in_schema=False)
async def leaderboard_page(
    request: Request,
    session: SessionDep,
    category: CategoryQuery = None,
    method: MethodQuery = None,
    exclude: ExcludeQuery = None,
    retired: RetiredQuery = None,
    compare: CompareQuery = None,
    dedup: DedupQuery = None,
    sort: SortQuery = None,
    order: OrderQuery = None,
) -> Response:
    sort_key = sort if sort in service.SORT_KEYS else "rank"
    descending = order == "desc" if order in ("asc", "desc") else sort_key in pages.DESCENDING_FIRST
    choice = view_choice(exclude, retired, compare, dedup)

    async def build() -> Rendered:
        try:
            view = await _board_view(request, session, method, category, choice)
        except InvalidInput as exc:
            return Rendered.make(
                pages.render_error(exc.message, status_code=422).encode(),
                "text/html; charset=utf-8",
                status_code=422,
            )
        # Read once per rebuilt page, not per request: the page says when.
        html = pages.render_leaderboard(
            view,
            sort=sort_key,
            descending=descending,
            vote_counts=await integrity.vote_counts(session),
            sampling=await sampling_stats.sampling_report(
                session, settings=request.app.state.settings
            ),
            judge=await judge_name(session, settings=request.app.state.settings),
            duplicate_limit=request.app.state.settings.duplicate_prompt_limit,
        )
        return Rendered.make(
            html.encode(), "text/html; charset=utf-8", headers=snapshot_headers(view)
        )

    key = ("page", category, method, choice, sort_key, descending)
    return _respond(request, await _cached(request, session, key, build))


@router.get("/models/{name:path}", response_class=HTMLResponse, include_in_schema=False)
async def model_page(
    name: str, request: Request, session: SessionDep, method: MethodQuery = None
) -> Response:
    async def build() -> Rendered:
        try:
            view = await service.model_view(
                session, name=name, method=method, **_bootstrap_settings(request)
            )
        except InvalidInput as exc:
            return Rendered.make(
                pages.render_error(exc.message, status_code=422).encode(),
                "text/html; charset=utf-8",
                status_code=422,
            )
        if view is None:
            return Rendered.make(
                pages.render_model_missing(name).encode(),
                "text/html; charset=utf-8",
                status_code=404,
            )
        return Rendered.make(pages.render_model(view).encode(), "text/html; charset=utf-8")

    return _respond(request, await _cached(request, session, ("model", name, method), build))


# ------------------------------------------------------------------ tables


@dataclass
class BoardQuery:
    """Which board a table is of: the query parameters every table download takes."""

    category: CategoryQuery = None
    method: MethodQuery = None
    exclude: ExcludeQuery = None
    retired: RetiredQuery = None
    compare: CompareQuery = None
    dedup: DedupQuery = None

    @property
    def choice(self) -> service.ViewChoice:
        return view_choice(self.exclude, self.retired, self.compare, self.dedup)


BoardDep = Annotated[BoardQuery, Depends()]


@dataclass(frozen=True)
class _Table:
    """One download of the current board: its body, its type, and a file name if an attachment."""

    body: bytes
    media_type: str
    filename: str | None = None


async def _board_table(
    request: Request,
    session: AsyncSession,
    board: BoardQuery,
    key: tuple[Any, ...],
    render: Callable[[service.BoardView], _Table],
) -> Response:
    """A table of the board, rendered once per data generation, with the snapshot's headers."""

    async def build() -> Rendered:
        view = await _board_view(request, session, board.method, board.category, board.choice)
        table = render(view)
        headers = snapshot_headers(view)
        if table.filename is not None:
            headers.update(_attachment(table.filename))
        return Rendered.make(table.body, table.media_type, headers=headers)

    cache_key = (*key, board.category, board.method, board.choice)
    return _respond(request, await _cached(request, session, cache_key, build))


def _json(out: Callable[[service.BoardView], BaseModel]) -> Callable[[service.BoardView], _Table]:
    return lambda view: _Table(out(view).model_dump_json().encode(), JSON_TYPE)


def _csv(
    stem: str, text: Callable[[service.BoardView], str]
) -> Callable[[service.BoardView], _Table]:
    def render(view: service.BoardView) -> _Table:
        name = f"{stem}-{_table_name(view)}.csv"
        return _Table(text(view).encode(), CSV_TYPE, name)

    return render


@router.get("/api/leaderboard", response_model=LeaderboardOut)
async def leaderboard_json(request: Request, session: SessionDep, board: BoardDep) -> Response:
    """The table of /leaderboard as JSON, with the snapshot's time, method, parameters and hash."""
    return await _board_table(request, session, board, ("json",), _json(pages.leaderboard_out))


@router.get("/leaderboard.csv", response_class=Response)
async def leaderboard_csv(request: Request, session: SessionDep, board: BoardDep) -> Response:
    """The same rows as plain CSV; the snapshot's metadata is in the X-Arena-* headers."""
    render = _csv("leaderboard", pages.leaderboard_csv)
    return await _board_table(request, session, board, ("csv",), render)


@router.get("/leaderboard.parquet", response_class=Response)
async def leaderboard_parquet(request: Request, session: SessionDep, board: BoardDep) -> Response:
    """The same rows as Parquet; the snapshot's metadata in the headers and in the file's footer
    (keys `arena:snapshot-id`, `arena:vote-set-hash`, ...)."""

    def render(view: service.BoardView) -> _Table:
        metadata = {
            "arena:" + name.removeprefix("X-Arena-").lower(): value
            for name, value in snapshot_headers(view).items()
        }
        name = f"leaderboard-{_table_name(view)}.parquet"
        fragility = pages.fragility_out(view)
        first = None if fragility is None else fragility.first_place
        body = parquet_export.leaderboard_parquet(
            view.rows, metadata, None if first is None else (first.above, first.votes)
        )
        return _Table(body, parquet_export.PARQUET_TYPE, name)

    return await _board_table(request, session, board, ("parquet",), render)


@router.get("/api/leaderboard/matrices", response_model=MatricesOut)
async def matrices_json(request: Request, session: SessionDep, board: BoardDep) -> Response:
    """The plot tables: win fractions, battle counts, predicted win rates, sampling shares."""
    return await _board_table(request, session, board, ("matrices",), _json(pages.matrices_out))


@router.get("/leaderboard/{table}.csv", response_class=Response)
async def matrix_csv(
    table: str, request: Request, session: SessionDep, board: BoardDep
) -> Response:
    """One plot table as CSV (first column the row model); the twin of /api/leaderboard/matrices."""
    if table not in MATRIX_TABLES:
        raise InvalidInput(f"table: {table!r} is not one of {', '.join(MATRIX_TABLES)}")
    render = _csv(table, lambda view: pages.matrix_csv(view, table))
    return await _board_table(request, session, board, ("matrix", table), render)


@router.get("/api/leaderboard/models/{name:path}", response_model=ModelOut)
async def model_json(
    name: str, request: Request, session: SessionDep, method: MethodQuery = None
) -> Response:
    """The data of /models/{name}: current rating, history, opponents, status history."""

    async def build() -> Rendered:
        view = await service.model_view(
            session, name=name, method=method, **_bootstrap_settings(request)
        )
        if view is None:
            body = json.dumps(
                {"detail": f"No public model named {name!r}; /api/leaderboard lists them."}
            ).encode()
            return Rendered.make(body, "application/json", status_code=404)
        return Rendered.make(pages.model_out(view).model_dump_json().encode(), "application/json")

    return _respond(request, await _cached(request, session, ("model-json", name, method), build))


# ------------------------------------------------------------------ open data


def _stream(
    chunks: AsyncIterator[bytes], media_type: str, filename: str, released: bool
) -> StreamingResponse:
    headers = {
        **_attachment(filename),
        "X-Arena-Conversations-Released": "true" if released else "false",
        "Cache-Control": "no-store",
    }
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


def _download_context(request: Request) -> tuple[async_sessionmaker[AsyncSession], str, bool]:
    state = request.app.state
    return state.sessionmaker, state.secret_key, bool(state.settings.release_conversations)


SnapshotQuery = Annotated[
    int | None,
    Query(
        description="only the votes this snapshot was computed from (to re-rate it exactly)",
        ge=1,
        le=2**31 - 1,  # ids are 32-bit integers in PostgreSQL; a larger one is no snapshot
    ),
]


async def _battles_export(
    request: Request,
    session: AsyncSession,
    snapshot: int | None,
    export: Callable[..., AsyncIterator[bytes]],
    media_type: str,
    suffix: str,
) -> StreamingResponse:
    """The counted votes (of one snapshot, or all), streamed as `export` writes them."""
    scope = await service.export_scope(session, snapshot_id=snapshot)
    await session.close()  # the export reads in sessions of its own, as it streams
    sessionmaker, secret, released = _download_context(request)
    chunks = export(sessionmaker, secret=secret, with_conversations=released, scope=scope)
    return _stream(chunks, media_type, _export_name("battles", snapshot, suffix), released)


@router.get("/battles.jsonl", response_class=StreamingResponse)
async def battles_jsonl(
    request: Request, session: SessionDep, snapshot: SnapshotQuery = None
) -> StreamingResponse:
    """Every counted vote as a FastChat clean-battle record, one JSON object per line."""
    return await _battles_export(
        request, session, snapshot, downloads.battles_jsonl, JSONL_TYPE, "jsonl"
    )


@router.get("/battles.csv", response_class=StreamingResponse)
async def battles_csv(
    request: Request, session: SessionDep, snapshot: SnapshotQuery = None
) -> StreamingResponse:
    """Every counted vote as a CSV row with FastChat's clean-battle columns."""
    return await _battles_export(request, session, snapshot, downloads.battles_csv, CSV_TYPE, "csv")


def _export_name(stem: str, snapshot: int | None, suffix: str) -> str:
    return f"{stem}.{suffix}" if snapshot is None else f"{stem}-snapshot-{snapshot}.{suffix}"


@router.get("/preferences.jsonl", response_class=StreamingResponse)
async def preferences_jsonl(request: Request) -> StreamingResponse:
    """Counted decisive votes as DPO preference pairs; only when conversations are released."""
    sessionmaker, secret, released = _download_context(request)
    if not released:
        raise downloads.ConversationsNotReleased()
    chunks = downloads.preferences_jsonl(sessionmaker, secret=secret)
    return _stream(chunks, JSONL_TYPE, "preferences.jsonl", released)


@router.get("/preferences.parquet", response_class=StreamingResponse)
async def preferences_parquet(request: Request) -> StreamingResponse:
    """The preference pairs of /preferences.jsonl as one Parquet file, streamed."""
    sessionmaker, secret, released = _download_context(request)
    if not released:
        raise downloads.ConversationsNotReleased()
    chunks = parquet_export.preferences_parquet(sessionmaker, secret=secret)
    return _stream(chunks, parquet_export.PARQUET_TYPE, "preferences.parquet", released)


@router.get("/battles.parquet", response_class=StreamingResponse)
async def battles_parquet(
    request: Request, session: SessionDep, snapshot: SnapshotQuery = None
) -> StreamingResponse:
    """The rows of /battles.jsonl, same columns in the same order, as one Parquet file."""
    return await _battles_export(
        request,
        session,
        snapshot,
        parquet_export.battles_parquet,
        parquet_export.PARQUET_TYPE,
        "parquet",
    )


async def _card(
    request: Request,
    session: AsyncSession,
    *,
    export: dataset_card.ExportKind,
    snapshot: int | None,
) -> Response:
    settings = request.app.state.settings
    if export == "battles":
        scope = await service.export_scope(session, snapshot_id=snapshot)
        stem = _export_name("battles", snapshot, "")
        data_files = tuple(stem + suffix for suffix in ("parquet", "jsonl", "csv"))
    else:
        scope = ExportScope()
        data_files = ("preferences.parquet", "preferences.jsonl")
    board = await dataset_card.matching_leaderboard(session, snapshot_id=snapshot)
    await session.close()  # the counts are read in sessions of their own, as the export reads
    sessionmaker, secret, released = _download_context(request)
    decisive_only = export == "preferences"
    stats = await dataset_card.export_stats(
        sessionmaker,
        secret=secret,
        scope=scope,
        with_conversations=released,
        decisive_only=decisive_only,
    )
    facts = dataset_card.CardFacts(
        export=export,
        data_files=data_files,
        fields=battle_fields(released) if export == "battles" else PREFERENCE_FIELDS,
        licence=settings.data_license,
        licence_chosen="data_license" in settings.model_fields_set,
        scope=scope,
        conversations_released=released,
        decisive_only=decisive_only,
        leaderboard=board,
    )
    headers = {**_attachment(f"{data_files[0].rsplit('.', 1)[0]}.card.md")}
    headers["Cache-Control"] = "no-store"
    return Response(
        dataset_card.render_card(facts, stats).encode(),
        media_type=dataset_card.CARD_TYPE,
        headers=headers,
    )


@router.get("/battles.card.md", response_class=Response)
async def battles_card(
    request: Request, session: SessionDep, snapshot: SnapshotQuery = None
) -> Response:
    """The dataset card of /battles.parquet (and its JSON Lines and CSV twins): fields,
    collection period, filters, redaction, counts, the leaderboard's vote-set hash, licence."""
    return await _card(request, session, export="battles", snapshot=snapshot)


@router.get("/preferences.card.md", response_class=Response)
async def preferences_card(request: Request, session: SessionDep) -> Response:
    """The dataset card of /preferences.parquet and /preferences.jsonl."""
    if not request.app.state.settings.release_conversations:
        raise downloads.ConversationsNotReleased()
    return await _card(request, session, export="preferences", snapshot=None)
