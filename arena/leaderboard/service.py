"""Reading stored snapshots for pages and downloads: latest tables, categories, model facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.errors import InvalidInput, NotFound
from arena.leaderboard.downloads import ExportScope
from arena.leaderboard.schemas import LeaderboardRowOut, ModelFacts
from arena.leaderboard.snapshots import (
    ALL,
    BT,
    BT_STYLE,
    BT_STYLE_BOOTSTRAP,
    FIXED_CATEGORIES,
    LANGUAGE_PREFIX,
    snapshot_methods,
    view_methods,
)
from arena.models import Model, ModelStatus, ModelStatusEvent, RatingSnapshot, Vote
from arena.ratings.categories import JUDGED_CATEGORIES
from arena.ratings.errors import RatingsError
from arena.ratings.views import EXCLUSIONS, PLAIN, keeps_duplicates, view_exclusions, view_key

Generation = tuple[int, int]
SORT_KEYS: Final[tuple[str, ...]] = (
    "rank",
    "model",
    "rating",
    "votes",
    "win_rate",
    "organization",
    "license",
    "status",
)


class BoardRow(LeaderboardRowOut):
    """One line of the public table: the snapshot's numbers and the model's public facts, and
    (for the page, not the downloads) since when the model is in its status."""

    status_since: datetime | None


@dataclass(frozen=True)
class ViewChoice:
    """How a table is viewed beyond its method and category: the exclusions applied before
    rating and whether duplicates are kept (a stored view), whether retired models are listed,
    and the method whose table the rank change is measured against (None: no rank-change
    column)."""

    exclude: tuple[str, ...] = ()
    show_retired: bool = False
    compare: str | None = None
    # Deduplication off: the votes held back for a prompt past the duplicate limit rated too.
    keep_duplicates: bool = False

    @property
    def key(self) -> str:
        return view_key(self.exclude, keep_duplicates=self.keep_duplicates)


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    computed_at: datetime
    method: str
    category: str
    params: dict[str, Any]
    vote_set_hash: str
    n_votes: int
    view: str = ""


@dataclass(frozen=True)
class BoardView:
    """Everything /leaderboard, /leaderboard.csv and /api/leaderboard show for one table."""

    method: str
    category: str
    snapshot: SnapshotInfo | None
    rows: list[BoardRow]
    unrated: list[dict[str, Any]]
    extras: dict[str, Any]
    methods: tuple[str, ...]
    categories: list[str]
    votes_total: int
    choice: ViewChoice = field(default_factory=ViewChoice)
    exclusions: tuple[str, ...] = ()
    retired_hidden: int = 0
    compared: SnapshotInfo | None = None
    # Whether some stored view keeps the held-back duplicates (else deduplication changes
    # nothing: no vote has been held back as a duplicate prompt).
    duplicates_stored: bool = False


async def data_generation(session: AsyncSession) -> Generation:
    """(newest snapshot id, newest status event id): what a cached page depends on, one query."""
    row = (
        await session.execute(
            select(
                select(func.max(RatingSnapshot.id)).scalar_subquery(),
                select(func.max(ModelStatusEvent.id)).scalar_subquery(),
            )
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


async def snapshot_categories(session: AsyncSession) -> list[str]:
    """The fixed categories, the judged ones that have a stored table (none before a judge has
    labelled a counted battle: never an empty table), then every language that has one."""
    stored = set((await session.scalars(select(RatingSnapshot.category).distinct())).all())
    judged = [c for c in JUDGED_CATEGORIES if c in stored]
    languages = sorted(c for c in stored if c.startswith(LANGUAGE_PREFIX))
    return [*FIXED_CATEGORIES, *judged, *languages]


def resolve_method(method: str | None, methods: tuple[str, ...]) -> str:
    if method is None or method == "":
        return BT
    if method not in methods:
        raise InvalidInput(
            f"method: {method!r} is not a table here; use one of {', '.join(methods)}"
        )
    return method


def resolve_category(category: str | None, categories: list[str]) -> str:
    if category is None or category == "":
        return ALL
    wanted = category.strip().casefold()
    for known in categories:
        if known.casefold() == wanted or (
            known.startswith(LANGUAGE_PREFIX) and known[len(LANGUAGE_PREFIX) :].casefold() == wanted
        ):
            return known
    raise InvalidInput(f"category: {category!r} has no table; use one of {', '.join(categories)}")


def resolve_view(choice: ViewChoice, methods: tuple[str, ...]) -> ViewChoice:
    """The choice with its exclusions in order; InvalidInput names an unknown exclusion or
    compared method."""
    try:
        key = choice.key
    except RatingsError as exc:
        raise InvalidInput(f"exclude: {exc}") from None
    if choice.compare not in (None, "") and choice.compare not in methods:
        raise InvalidInput(
            f"compare: {choice.compare!r} is not a table here; use one of {', '.join(methods)}"
        )
    return ViewChoice(
        exclude=view_exclusions(key),
        show_retired=choice.show_retired,
        compare=choice.compare or None,
        keep_duplicates=keeps_duplicates(key),
    )


async def stored_view_parts(session: AsyncSession) -> tuple[tuple[str, ...], bool]:
    """The exclusions some stored view applies, in EXCLUSIONS order, and whether some stored
    view keeps the held-back duplicates."""
    keys = (await session.scalars(select(RatingSnapshot.view).distinct())).all()
    found = {e for key in keys for e in view_exclusions(key)}
    return tuple(e for e in EXCLUSIONS if e in found), any(map(keeps_duplicates, keys))


async def latest_snapshot(
    session: AsyncSession, *, method: str, category: str, view: str = PLAIN
) -> RatingSnapshot | None:
    return await session.scalar(
        select(RatingSnapshot)
        .where(
            RatingSnapshot.method == method,
            RatingSnapshot.category == category,
            RatingSnapshot.view == view,
        )
        .order_by(RatingSnapshot.computed_at.desc(), RatingSnapshot.id.desc())
        .limit(1)
    )


def _facts(model: Model) -> ModelFacts:
    return ModelFacts(
        name=model.name,
        organization=model.organization,
        license=model.license,
        description=model.description,
        status=model.status.value,
        created_at=model.created_at,
        activated_at=model.activated_at,
        paused_at=model.paused_at,
        retired_at=model.retired_at,
    )


async def all_model_facts(session: AsyncSession) -> dict[str, ModelFacts]:
    return {m.name: _facts(m) for m in await session.scalars(select(Model))}


async def counted_votes_total(session: AsyncSession) -> int:
    total = await session.scalar(
        select(func.count()).select_from(Vote).where(Vote.counted.is_(True))
    )
    return int(total or 0)


def _info(snapshot: RatingSnapshot) -> SnapshotInfo:
    return SnapshotInfo(
        id=snapshot.id,
        computed_at=snapshot.computed_at,
        method=snapshot.method,
        category=snapshot.category,
        params=dict(snapshot.params),
        vote_set_hash=snapshot.vote_set_hash,
        n_votes=snapshot.n_votes,
        view=snapshot.view,
    )


def board_rows(rows: list[dict[str, Any]], facts: dict[str, ModelFacts]) -> list[BoardRow]:
    made = []
    for row in rows:
        fact = facts.get(str(row["model"]))
        made.append(
            BoardRow(
                rank=int(row["rank"]),
                model=str(row["model"]),
                rating=float(row["rating"]),
                ci_lower=row.get("ci_lower"),
                ci_upper=row.get("ci_upper"),
                votes=int(row["votes"]),
                win_rate=row.get("win_rate"),
                swap_votes=row.get("swap_votes"),
                organization=fact.organization if fact else "",
                license=fact.license if fact else "",
                status=fact.status if fact else "",
                activated_at=fact.activated_at if fact else None,
                paused_at=fact.paused_at if fact else None,
                retired_at=fact.retired_at if fact else None,
                status_since=fact.status_since if fact else None,
            )
        )
    return made


def sort_rows(rows: list[BoardRow], key: str, descending: bool) -> list[BoardRow]:
    """The rows sorted by a column; missing values last whichever the direction."""

    def value(row: BoardRow) -> Any:
        raw = getattr(row, key)
        return raw.casefold() if isinstance(raw, str) else raw

    present = [r for r in rows if value(r) is not None and value(r) != ""]
    missing = [r for r in rows if r not in present]
    present.sort(key=lambda r: (value(r), r.model), reverse=descending)
    return present + missing


def with_rank_change(rows: list[BoardRow], compared: list[dict[str, Any]]) -> list[BoardRow]:
    """Each row's rank_change: its rank in the compared table minus its rank here (positive:
    ranked higher here); None for a model the compared table does not rate."""
    ranks = {str(r["model"]): int(r["rank"]) for r in compared}
    return [
        row.model_copy(
            update={"rank_change": ranks[row.model] - row.rank if row.model in ranks else None}
        )
        for row in rows
    ]


async def board_view(
    session: AsyncSession,
    *,
    method: str | None,
    category: str | None,
    bootstrap_rounds: int,
    choice: ViewChoice | None = None,
    style_bootstrap_rounds: int = 0,
) -> BoardView:
    """The latest table for (method, category, view); InvalidInput names the allowed values.

    Retired models are left out unless the choice shows them; with a compared method, each
    row carries its rank change against that method's table of the same category and view.
    """
    every_method = snapshot_methods(bootstrap_rounds, style_bootstrap_rounds)
    chosen_method = resolve_method(method, every_method)
    categories = await snapshot_categories(session)
    chosen_category = resolve_category(category, categories)
    chosen = resolve_view(choice or ViewChoice(), every_method)
    methods = view_methods(every_method, chosen.key)
    if chosen_method not in methods or (chosen.compare or chosen_method) not in methods:
        raise InvalidInput(
            f"method: {BT_STYLE_BOOTSTRAP} tables are stored without exclusions only; choose"
            f" {BT_STYLE} (sandwich intervals) with exclusions, or leave exclude out"
        )
    snapshot = await latest_snapshot(
        session, method=chosen_method, category=chosen_category, view=chosen.key
    )
    exclusions, duplicates_stored = await stored_view_parts(session)
    if snapshot is None and chosen.keep_duplicates and not duplicates_stored:
        raise InvalidInput(
            "dedup: no vote has been held back for a prompt used more often than the duplicate"
            " limit, so turning deduplication off would change nothing; leave dedup out"
        )
    if snapshot is None and chosen.exclude:
        raise InvalidInput(
            f"exclude: no table excludes {' and '.join(chosen.exclude)} yet; the recompute"
            " stores one for each exclusion its votes have the data for"
        )
    if snapshot is None and chosen.keep_duplicates:
        raise InvalidInput(
            f"dedup: no table of {chosen_category} without deduplication yet; the next"
            " recompute stores one"
        )
    facts = await all_model_facts(session)
    rows = [] if snapshot is None else board_rows(list(snapshot.rows), facts)
    compared = None
    if chosen.compare is not None and snapshot is not None:
        compared = await latest_snapshot(
            session, method=chosen.compare, category=chosen_category, view=chosen.key
        )
        rows = with_rank_change(rows, [] if compared is None else list(compared.rows))
    shown = rows if chosen.show_retired else [r for r in rows if r.status != "retired"]
    votes_total = (
        int(snapshot.extras.get("votes_total", snapshot.n_votes))
        if snapshot is not None and snapshot.extras
        else await counted_votes_total(session)
    )
    return BoardView(
        method=chosen_method,
        category=chosen_category,
        snapshot=None if snapshot is None else _info(snapshot),
        rows=shown,
        unrated=[] if snapshot is None else list(snapshot.extras.get("unrated", [])),
        extras={} if snapshot is None else dict(snapshot.extras),
        methods=methods,
        categories=categories,
        votes_total=votes_total,
        choice=chosen,
        exclusions=exclusions,
        retired_hidden=len(rows) - len(shown),
        compared=None if compared is None else _info(compared),
        duplicates_stored=duplicates_stored,
    )


@dataclass(frozen=True)
class Opponent:
    model: str
    battles: int
    win_fraction: float | None
    predicted: float | None


@dataclass(frozen=True)
class StatusChange:
    status: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    rating: float
    ci_lower: float | None
    ci_upper: float | None
    rank: int
    votes: int


@dataclass(frozen=True)
class ModelView:
    """Everything /models/{name} shows."""

    facts: ModelFacts
    method: str
    methods: tuple[str, ...]
    snapshot: SnapshotInfo | None
    row: BoardRow | None
    unrated_reason: str | None
    unrated_votes: int
    rated_models: int
    history: list[HistoryEntry]
    opponents: list[Opponent]
    status_history: list[StatusChange]
    battles_drawn: int
    sampling_share: float | None
    vote_share: float | None
    extras: dict[str, Any] = field(default_factory=dict)
    # Votes of side-by-side battles (the models chosen by name), never in the rating
    named_votes: int = 0


def _opponents(extras: dict[str, Any], name: str) -> list[Opponent]:
    models = list(extras.get("models", []))
    if name not in models:
        return []
    i = models.index(name)
    fractions = extras.get("win_fraction", [])
    counts = extras.get("battle_count", [])
    predicted = extras.get("predicted_win", [])
    found = []
    for j, other in enumerate(models):
        if j == i:
            continue
        battles = int(counts[i][j] or 0) if counts else 0
        found.append(
            Opponent(
                model=other,
                battles=battles,
                win_fraction=fractions[i][j] if fractions else None,
                predicted=predicted[i][j] if predicted else None,
            )
        )
    found.sort(key=lambda o: (-o.battles, o.model))
    return found


async def model_view(
    session: AsyncSession,
    *,
    name: str,
    method: str | None,
    bootstrap_rounds: int,
    style_bootstrap_rounds: int = 0,
) -> ModelView | None:
    """The model's page, or None when there is no public model of that name (pending ones are
    not public: they have never been in a battle)."""
    methods = snapshot_methods(bootstrap_rounds, style_bootstrap_rounds)
    chosen = resolve_method(method, methods)
    model = await session.scalar(select(Model).where(Model.name == name))
    if model is None or model.status == ModelStatus.pending:
        return None
    facts = _facts(model)
    snapshot = await latest_snapshot(session, method=chosen, category=ALL, view=PLAIN)
    row = None
    unrated_reason = None
    unrated_votes = 0
    extras: dict[str, Any] = {}
    if snapshot is not None:
        extras = dict(snapshot.extras)
        rows = board_rows([r for r in snapshot.rows if r["model"] == name], {name: facts})
        row = rows[0] if rows else None
        for entry in extras.get("unrated", []):
            if entry.get("model") == name:
                unrated_reason = str(entry.get("reason", ""))
                unrated_votes = int(entry.get("votes", 0))
    history = []
    for computed_at, rows_json in await session.execute(
        select(RatingSnapshot.computed_at, RatingSnapshot.rows)
        .where(
            RatingSnapshot.method == chosen,
            RatingSnapshot.category == ALL,
            RatingSnapshot.view == PLAIN,
        )
        .order_by(RatingSnapshot.computed_at)
    ):
        for entry in rows_json:
            if entry.get("model") == name:
                history.append(
                    HistoryEntry(
                        at=computed_at,
                        rating=float(entry["rating"]),
                        ci_lower=entry.get("ci_lower"),
                        ci_upper=entry.get("ci_upper"),
                        rank=int(entry["rank"]),
                        votes=int(entry["votes"]),
                    )
                )
                break
    events = await session.scalars(
        select(ModelStatusEvent)
        .where(ModelStatusEvent.model_id == model.id)
        .order_by(ModelStatusEvent.created_at, ModelStatusEvent.id)
    )
    drawn = extras.get("battles_drawn", {})
    shares = extras.get("sampling_share", {})
    n_votes = snapshot.n_votes if snapshot is not None else 0
    vote_share = row.votes / (2 * n_votes) if row is not None and n_votes else None
    return ModelView(
        facts=facts,
        method=chosen,
        methods=methods,
        snapshot=None if snapshot is None else _info(snapshot),
        row=row,
        unrated_reason=unrated_reason,
        unrated_votes=unrated_votes,
        rated_models=0 if snapshot is None else len(snapshot.rows),
        history=history,
        opponents=_opponents(extras, name),
        status_history=[
            StatusChange(status=e.status.value, reason=e.reason, at=e.created_at) for e in events
        ],
        battles_drawn=int(drawn.get(name, 0)),
        sampling_share=shares.get(name),
        vote_share=vote_share,
        extras=extras,
        named_votes=int(extras.get("named_votes", {}).get(name, 0)),
    )


async def export_scope(session: AsyncSession, *, snapshot_id: int | None) -> ExportScope:
    """All counted votes, or exactly the input of snapshot `snapshot_id` (for re-rating it)."""
    if snapshot_id is None:
        return ExportScope()
    snapshot = await session.get(RatingSnapshot, snapshot_id)
    if snapshot is None:
        raise NotFound(
            f"No snapshot {snapshot_id}: it never existed or was thinned out of the history "
            "(hourly for two days, daily after that). /api/leaderboard names the current one."
        )
    left_out = frozenset(str(u["model"]) for u in snapshot.extras.get("unrated", []))
    return ExportScope(until=snapshot.computed_at, exclude_models=left_out)
