"""The recompute job: counted votes -> a rating_snapshot per method and category, off requests."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import and_, delete, func, select, text, union_all, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from arena.battles.ratings_view import GAINS_KEY
from arena.battles.settled import drawn, settled
from arena.config import DEFAULT_VOTE_WINDOW_SECONDS, Settings
from arena.db import fast_json, make_sync_engine
from arena.job_lock import hold_job_lock
from arena.leaderboard.battles_source import load_counted_battles, tag_voted_battles
from arena.leaderboard.downloads import named_only
from arena.leaderboard.forked_map import forked_map
from arena.models import Battle, Model, RatingSnapshot, Vote, utcnow
from arena.ratings import (
    Leaderboard,
    PairCounts,
    aggregate_battles,
    battle_count_values,
    category_mask,
    compute_leaderboard,
    fit_bradley_terry,
    parse_anchor,
    predicted_win_values,
    win_fraction_values,
    with_fragility,
)
from arena.ratings.active_sampling import pair_gains
from arena.ratings.battles import FloatArray, count_pairs
from arena.ratings.categories import (
    CREATIVE_WRITING,
    HARD,
    INSTRUCTION_FOLLOWING,
    JUDGED_CATEGORIES,
    JUDGED_COLUMN,
    MATH,
    BoolArray,
)
from arena.ratings.compute import warm_compiled_kernels
from arena.ratings.style_control import STYLE_COLUMNS
from arena.ratings.subsets import BattleSubset, CodedBattles
from arena.ratings.views import (
    DEFAULT_MIN_PROMPT_TOKENS,
    PLAIN,
    duplicate_rows,
    keeps_duplicates,
    stored_views,
    view_exclusions,
    view_key,
    view_mask,
)
from arena.ratings.views import view_params as views_params

log = logging.getLogger(__name__)

JOB_NAME: Final = "ratings-recompute"
# The seed of every bootstrap the job runs; stored in each snapshot's params, so a download can
# be re-rated to the same numbers.
SNAPSHOT_SEED: Final = 20240501
BT: Final = "bt"
BT_BOOTSTRAP: Final = "bt-bootstrap"
BT_STYLE: Final = "bt-style"
BT_STYLE_BOOTSTRAP: Final = "bt-style-bootstrap"
# The style-controlled tables: fitted on the battles with style features (styled_rows).
STYLE_METHODS: Final = frozenset({BT_STYLE, BT_STYLE_BOOTSTRAP})
ELO: Final = "elo"
METHOD_LABELS: Final[dict[str, str]] = {
    BT: "Bradley-Terry, sandwich 95% intervals",
    BT_BOOTSTRAP: "Bradley-Terry, bootstrap 95% intervals",
    BT_STYLE: "Style-controlled Bradley-Terry, sandwich 95% intervals",
    BT_STYLE_BOOTSTRAP: "Style-controlled Bradley-Terry, bootstrap 95% intervals",
    ELO: "Online Elo (K=4), no intervals",
}
ALL: Final = "all"
FIXED_CATEGORIES: Final[tuple[str, ...]] = (ALL, "coding", "long", "multi-turn", "vision")
CATEGORY_LABELS: Final[dict[str, str]] = {
    ALL: "All",
    "coding": "Coding",
    "long": "Long prompts",
    "multi-turn": "Multi-turn",
    "vision": "Vision",
    HARD: "Hard Prompts",
    MATH: "Math",
    INSTRUCTION_FOLLOWING: "Instruction Following",
    CREATIVE_WRITING: "Creative Writing",
}
LANGUAGE_PREFIX: Final = "language:"
# A language gets its own table once this many counted votes are in it; the largest ones first.
MIN_LANGUAGE_VOTES: Final = 10
MAX_LANGUAGES: Final = 12
UNRATED_REASON: Final = (
    "needs at least one win and one loss against rated models (a tie counts as half of each)"
)
DISCONNECTED_REASON: Final = "has not yet both won and lost against the models of the main group"
# Snapshot history: (within this age, keep the newest of each bucket this wide); one a day after.
HISTORY_TIERS: Final[tuple[tuple[timedelta, timedelta], ...]] = (
    (timedelta(hours=2), timedelta(minutes=5)),
    (timedelta(days=2), timedelta(hours=1)),
)
# What a table costs beyond its battles, in battles (mostly the bootstrap's refits): how the
# recompute balances tables across processes.
_TABLE_FIXED_COST: Final = 200_000.0
# What a superseded snapshot keeps of its extras (the matrices go): enough to re-rate it.
KEPT_EXTRAS: Final[tuple[str, ...]] = (
    "unrated",
    "category_votes",
    "votes_total",
    "judged_by",
    "battles_without_style",
    "style_coefficients",
)


def category_label(category: str) -> str:
    if category.startswith(LANGUAGE_PREFIX):
        return category[len(LANGUAGE_PREFIX) :]
    return CATEGORY_LABELS.get(category, category)


def snapshot_methods(bootstrap_rounds: int, style_bootstrap_rounds: int = 0) -> tuple[str, ...]:
    """The tables of each category: BT with sandwich intervals, BT bootstrap if configured,
    style-controlled BT (sandwich intervals), its bootstrap if configured, Elo."""
    return (
        BT,
        *((BT_BOOTSTRAP,) if bootstrap_rounds > 0 else ()),
        BT_STYLE,
        *((BT_STYLE_BOOTSTRAP,) if style_bootstrap_rounds > 0 else ()),
        ELO,
    )


def view_methods(methods: Sequence[str], view: str) -> tuple[str, ...]:
    """The methods of `methods` with a table in `view`: the style-controlled bootstrap is
    stored for the plain view only (it costs most of a recompute)."""
    return tuple(m for m in methods if view == PLAIN or m != BT_STYLE_BOOTSTRAP)


@dataclass(frozen=True)
class RecomputeConfig:
    """What a recompute needs; plain values, so it crosses into a worker process."""

    database_url: str
    bootstrap_rounds: int = 0
    style_bootstrap_rounds: int = 0
    anchor: str = ""
    seed: int = SNAPSHOT_SEED
    vote_window_seconds: float = DEFAULT_VOTE_WINDOW_SECONDS
    # Off only for bench/leaderboard.py's baseline: how much the fragility figures cost.
    fragility: bool = True
    # Whether the overall Bradley-Terry table carries the pair gains of the active sampler.
    sampling_gains: bool = False
    # A first prompt shorter than this many tokens is a "short prompt" for the views.
    min_prompt_tokens: int = DEFAULT_MIN_PROMPT_TOKENS
    # Off only for bench/recompute_views.py's baseline: the plain view of every table alone.
    views: bool = True
    # How many processes share the tables (this one included; forked_map says when it forks).
    processes: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> RecomputeConfig:
        return cls(
            database_url=settings.database_url,
            bootstrap_rounds=settings.bootstrap_rounds,
            style_bootstrap_rounds=settings.style_bootstrap_rounds,
            anchor=settings.anchor,
            vote_window_seconds=settings.vote_window_seconds,
            sampling_gains=settings.sampling_mode == "active",
            min_prompt_tokens=settings.short_prompt_tokens,
            processes=settings.recompute_processes,
        )


@dataclass(frozen=True)
class RecomputeOutcome:
    """What one run did: whether it ran (False: another worker held the job), what it stored."""

    ran: bool
    stored: int = 0
    n_votes: int = 0
    failed: tuple[str, ...] = ()
    seconds: float = 0.0
    computed_at: datetime | None = None


@dataclass
class NewSnapshot:
    method: str
    category: str
    params: dict[str, Any]
    vote_set_hash: str
    n_votes: int
    rows: list[dict[str, Any]]
    extras: dict[str, Any] = field(default_factory=dict)
    view: str = PLAIN


def _matrix(values: FloatArray, digits: int | None) -> list[list[float | None]]:
    """A matrix as JSON-ready nested lists: rounded, NaN as None (null)."""
    shown = np.round(values, digits) if digits is not None else values
    missing = ~np.isfinite(values)
    if not missing.any():
        rows: list[list[float | None]] = shown.tolist()
        return rows
    cells = shown.astype(object)
    cells[missing] = None
    rows = cells.tolist()
    return rows


def rateable_models(counts: PairCounts) -> tuple[set[str], list[dict[str, Any]]]:
    """The models that can be rated together, and the models left out, why.

    Bradley-Terry ratings are finite exactly when every model can be reached from every other by
    a chain of "beat" (a tie counts both ways): the "beaten" graph is strongly connected. Rather
    than hide the whole table while a newcomer has only lost, the largest strongly connected group
    (by battles) is rated and the other models are listed as not yet rated.
    """
    m = counts.n_models
    beat_lo = counts.wins_lo + counts.ties  # lo beat hi (half of a tie each way)
    beat_hi = counts.wins_hi + counts.ties
    rows = np.concatenate([counts.lo[beat_lo > 0], counts.hi[beat_hi > 0]])
    cols = np.concatenate([counts.hi[beat_lo > 0], counts.lo[beat_hi > 0]])
    graph = coo_matrix((np.ones(rows.shape[0]), (rows, cols)), shape=(m, m))
    _, group = connected_components(graph, directed=True, connection="strong")
    votes = counts.votes()
    weight = np.bincount(group, weights=votes)
    best = int(np.argmax(weight))
    members = np.flatnonzero(group == best)
    if m < 2 or members.shape[0] < 2:
        members = np.array([], dtype=np.int64)
    wins = np.bincount(counts.lo, beat_lo, minlength=m) + np.bincount(
        counts.hi, beat_hi, minlength=m
    )
    losses = np.bincount(counts.lo, beat_hi, minlength=m) + np.bincount(
        counts.hi, beat_lo, minlength=m
    )
    kept = {counts.models[i] for i in members}
    unrated = [
        {
            "model": name,
            "votes": int(votes[i]),
            "reason": UNRATED_REASON
            if wins[i] == 0 or losses[i] == 0 or not kept
            else DISCONNECTED_REASON,
        }
        for i, name in enumerate(counts.models)
        if name not in kept
    ]
    return kept, unrated


def rateable_battles(battles: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The battles among the models that can be rated together (rateable_models), and the
    models left out, why."""
    if len(battles) == 0:
        return battles, []
    kept, unrated = rateable_models(aggregate_battles(battles))
    keep = (battles["model_a"].isin(kept) & battles["model_b"].isin(kept)).to_numpy()
    return battles.loc[keep].reset_index(drop=True), unrated


def category_rows(battles: pd.DataFrame, category: str) -> BoolArray:
    """Which battles are in one category, chosen by the rating engine's own filter, so that
    `arena ratings compute --category C` on a download selects exactly the same ones.

    A language filter looks at one column only: it runs on the distinct languages (a few dozen)
    and is spread back over the rows, instead of once per battle.
    """
    if category.startswith(LANGUAGE_PREFIX):
        codes, distinct = pd.factorize(battles["language"], use_na_sentinel=False)
        keep = category_mask(pd.DataFrame({"language": distinct}), category)[codes]
    else:
        keep = category_mask(battles, category)
    return np.asarray(keep, dtype=bool)


def snapshot_categories(battles: pd.DataFrame, counted: BoolArray | None = None) -> list[str]:
    """The fixed categories and the largest languages (MIN_LANGUAGE_VOTES or more votes), as
    the rows `counted` selects (all by default) have them."""
    categories = list(FIXED_CATEGORIES)
    judged = (
        battles[JUDGED_COLUMN].to_numpy(bool)
        if JUDGED_COLUMN in battles.columns
        else np.zeros(len(battles), dtype=bool)
    )
    if bool((judged if counted is None else judged & counted).any()):
        categories.extend(JUDGED_CATEGORIES)
    languages = battles["language"].astype(str)
    if counted is not None:
        languages = languages[counted]
    counts = languages[~languages.isin(["", "unknown"])].value_counts()
    categories.extend(
        f"{LANGUAGE_PREFIX}{language}"
        for language, n in counts.head(MAX_LANGUAGES).items()
        if int(n) >= MIN_LANGUAGE_VOTES
    )
    return categories


def _anchor(config: RecomputeConfig, models: Sequence[str]) -> tuple[str, float] | None:
    """The configured anchor when its model is in this table (a table without it is unanchored)."""
    if not config.anchor:
        return None
    name, rating = parse_anchor(config.anchor)
    return (name, rating) if name in models else None


def _leaderboard(
    subset: BattleSubset,
    method: str,
    config: RecomputeConfig,
    anchor: tuple[str, float] | None,
    bt: Leaderboard | None,
    fragility: bool,
) -> Leaderboard:
    """One table; `bt` is the plain Bradley-Terry table of the same battles when made already."""
    coded = partial(compute_leaderboard, encoded=subset.encoded, vote_hash=subset.vote_hash)
    if method == ELO:
        return coded(subset.battles, method="elo", anchor=anchor)
    if method == BT_BOOTSTRAP:
        board = coded(
            subset.battles,
            method="bt",
            bootstrap_rounds=config.bootstrap_rounds,
            seed=config.seed,
            anchor=anchor,
            fragility=bt is None and fragility,
        )
        # The bootstrap table keeps the full-data fit's ratings, hence its order and fragility.
        return board if bt is None else with_fragility(board, bt.fragility)
    return coded(subset.battles, method="bt", anchor=anchor, fragility=fragility)


def view_params(view: str, config: RecomputeConfig) -> dict[str, Any]:
    """What a snapshot's params say of its view: its key, its exclusions, their setting.
    Nothing for the plain view, whose params stay those `arena ratings compute` gives; a view's
    are those `arena ratings compute --exclude ...` adds."""
    return views_params(view, min_prompt_tokens=config.min_prompt_tokens)


def styled_rows(battles: pd.DataFrame) -> BoolArray:
    """Which battles have style features: those a style-controlled table rates (a battle erased
    before its style was worked out has none)."""
    if not set(STYLE_COLUMNS) <= set(battles.columns):
        return np.zeros(len(battles), dtype=bool)
    values = battles[list(STYLE_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(np.isfinite(values).all(axis=1), dtype=bool)


def judged_by(battles: pd.DataFrame, rows: BoolArray) -> dict[str, int]:
    """How many of the battles `rows` selects each judge (and prompt version) labelled, most
    first."""
    if "judge" not in battles.columns or not rows.any():
        return {}
    judged = rows & battles[JUDGED_COLUMN].to_numpy(dtype=bool)
    judges = battles["judge"].loc[judged].astype(str)
    return {str(name): int(n) for name, n in judges.value_counts().items()}


def category_snapshots(
    category: str,
    coded: CodedBattles,
    rows: BoolArray,
    *,
    battles: pd.DataFrame,
    config: RecomputeConfig,
    shared_extras: dict[str, Any],
    view: str = PLAIN,
    styled: BoolArray | None = None,
) -> list[NewSnapshot]:
    """Every method's table for the battles `rows` selects of `coded` (one category in one view,
    its exclusions applied; `battles` is the table `coded` codes); possibly empty tables, never
    an error for too few votes; RatingsError and other failures propagate to the caller.

    The fragility figures are worked out for the plain view only: they cost more than the
    rest of a table, and say how many votes hold the published order. The style-controlled
    table decides which models it can rate on the battles that have style features, which may
    leave other models unrated than the plain tables do; its extras say how many battles it
    left out. `styled`: styled_rows(battles), when the caller has it already.
    """
    methods = view_methods(
        snapshot_methods(config.bootstrap_rounds, config.style_bootstrap_rounds), view
    )
    extras: dict[str, Any] = {"category_votes": int(rows.sum()), **shared_extras}
    shown = view_params(view, config)
    if category in JUDGED_CATEGORIES:
        # Which judge put these battles in the category: the page, the JSON and every download
        # of the table name it (a change of judge shows, and `arena judge relabel` can follow).
        extras["judged_by"] = judged_by(battles, rows)
        shown = {**shown, "judged_by": extras["judged_by"]}
    table = _TableInput(category, coded, view, shown, extras, config)
    made = table.snapshots(rows, [m for m in methods if m not in STYLE_METHODS])
    styled_methods = [m for m in methods if m in STYLE_METHODS]
    if styled_methods:
        with_style = styled_rows(battles) if styled is None else styled
        made += table.snapshots(rows & with_style, styled_methods, style_from=(battles, rows))
    return made


@dataclass(frozen=True)
class _TableInput:
    category: str
    coded: CodedBattles
    view: str
    shown: dict[str, Any]
    extras: dict[str, Any]
    config: RecomputeConfig

    def snapshots(
        self,
        rows: BoolArray,
        methods: Sequence[str],
        *,
        style_from: tuple[pd.DataFrame, BoolArray] | None = None,
    ) -> list[NewSnapshot]:
        """The tables of `methods` over `rows`, the unrateable models left out; `style_from`:
        (the battles, the category's rows) for the style-controlled fit, which is handed every
        battle among the rateable models and leaves out (and counts) those without style."""
        category, coded, view, shown, config = (
            self.category,
            self.coded,
            self.view,
            self.shown,
            self.config,
        )
        subset_rows = rows
        subset = coded.subset(rows)
        unrated: list[dict[str, Any]] = []
        kept: set[str] = set(subset.encoded.models)
        if subset.n_battles:
            kept, unrated = rateable_models(count_pairs(subset.encoded))
            if len(kept) < len(subset.encoded.models):
                subset_rows = rows & coded.rows_of_models(kept)
                subset = coded.subset(subset_rows)
        extras: dict[str, Any] = {"unrated": unrated, **self.extras}
        if subset.n_battles == 0:
            return [
                NewSnapshot(
                    method=method,
                    category=category,
                    params={"category": category, **shown},
                    vote_set_hash=subset.vote_hash,
                    n_votes=0,
                    rows=[],
                    extras=extras,
                    view=view,
                )
                for method in methods
            ]
        counts = count_pairs(subset.encoded)
        anchor = _anchor(config, counts.models)
        gains = (
            sampling_gains(counts)
            if config.sampling_gains and category == ALL and view == PLAIN and BT in methods
            else None
        )
        made = []
        bt: Leaderboard | None = None
        fragility = config.fragility and view == PLAIN
        # The pair tables are the same for every method; each method's shows them in its order.
        win_fraction = win_fraction_values(counts)
        battle_count = battle_count_values(counts)
        position = {name: i for i, name in enumerate(counts.models)}
        for method in methods:
            method_params: dict[str, Any]
            if method in STYLE_METHODS and style_from is not None:
                battles, category_rows_ = style_from
                # The subset holds exactly the battles rated (with style, among `kept`), coded
                # and hashed once; the fit reads their style columns only (taking every column
                # of a million rows costs more than the fit's own preparation).
                styled = battles.loc[subset_rows, list(STYLE_COLUMNS)].reset_index(drop=True)
                # FastChat's convention (ridge 0.5 on the summed log-likelihood), in the params;
                # the bootstrap keeps the full-data fit's ratings, as bt-bootstrap does.
                rounds = config.style_bootstrap_rounds if method == BT_STYLE_BOOTSTRAP else None
                board = compute_leaderboard(
                    styled,
                    method="bt-style",
                    encoded=subset.encoded,
                    vote_hash=subset.vote_hash,
                    anchor=anchor,
                    bootstrap_rounds=rounds,
                    seed=config.seed if rounds else None,
                )
                # The category's battles among the rateable models that had no style to rate.
                unstyled = category_rows_ & coded.rows_of_models(kept) & ~subset_rows
                method_params = {"battles_without_style": int(unstyled.sum())}
            else:
                board = _leaderboard(subset, method, config, anchor, bt, fragility)
                method_params = {}
            if method == BT:
                bt = board
            # The subset holds this category's battles already: the same parameters as
            # `arena ratings compute --category C` on all of them.
            params = {**board.params, **method_params, "category": category, **shown}
            order = [row.model for row in board.rows]
            in_order = np.ix_(*[np.array([position[name] for name in order], dtype=np.int64)] * 2)
            as_json = board.to_json_dict()
            made.append(
                NewSnapshot(
                    method=method,
                    category=category,
                    params=params,
                    vote_set_hash=board.vote_set_hash,
                    n_votes=board.n_battles,
                    rows=as_json["models"],
                    extras={
                        **extras,
                        "fragility": as_json["fragility"],
                        **(
                            {
                                "style_coefficients": as_json["style_coefficients"],
                                "battles_without_style": params["battles_without_style"],
                            }
                            if "style_coefficients" in as_json
                            else {}
                        ),
                        "models": order,
                        "win_fraction": _matrix(win_fraction[in_order], 4),
                        "battle_count": _matrix(battle_count[in_order], None),
                        "predicted_win": _matrix(
                            predicted_win_values(
                                board.ratings().to_numpy(dtype=np.float64),
                                scale=params["scale"],
                                base=params["base"],
                            ),
                            4,
                        ),
                        **({GAINS_KEY: gains} if gains is not None and method == BT else {}),
                    },
                    view=view,
                )
            )
        return made


def sampling_gains(counts: PairCounts) -> dict[str, Any]:
    """The gain of one more vote on every pair of rated models, in all_pairs order (models in
    the order of `models`), for the active sampler; from the unweighted, unanchored fit, whose
    covariance the gains need (an anchor only shifts the ratings)."""
    gains = pair_gains(counts, fit_bradley_terry(counts).strengths)
    return {
        "models": list(gains.models),
        "gain": [float(f"{g:.6g}") for g in gains.gain],
    }


def sampling_shares(session: Session, *, now: datetime, window: timedelta) -> dict[str, Any]:
    """Settled battles (settled.py) each model was drawn into, voted or not, and its share of
    their model seats (two per battle; the shares sum to 1). Open battles are left out, so a
    snapshot taken while a battle runs does not name its pair."""
    over = and_(settled(now=now, window=window), drawn())
    sides = union_all(
        select(Battle.model_a_id.label("model_id")).where(over),
        select(Battle.model_b_id.label("model_id")).where(over),
    ).subquery()
    seats = dict(
        session.execute(
            select(Model.name, func.count())
            .select_from(sides)
            .join(Model, Model.id == sides.c.model_id)
            .group_by(Model.name)
        ).all()
    )
    total = sum(seats.values())
    return {
        "battles_drawn": {name: int(n) for name, n in sorted(seats.items())},
        "sampling_share": {name: n / total for name, n in sorted(seats.items())} if total else {},
    }


def named_votes(session: Session) -> dict[str, Any]:
    """Each model's votes in named battles (side by side, the models chosen by the visitor),
    held back by nothing but their mode: shown on its page apart from its rating, which never
    counts them."""
    sides = union_all(
        select(Battle.model_a_id.label("model_id"), Vote.id.label("vote_id"))
        .join(Vote, Vote.battle_id == Battle.id)
        .where(named_only()),
        select(Battle.model_b_id.label("model_id"), Vote.id.label("vote_id"))
        .join(Vote, Vote.battle_id == Battle.id)
        .where(named_only()),
    ).subquery()
    counts = session.execute(
        select(Model.name, func.count())
        .select_from(sides)
        .join(Model, Model.id == sides.c.model_id)
        .group_by(Model.name)
    ).all()
    return {"named_votes": {name: int(n) for name, n in sorted(counts)}}


def compute_snapshots(
    battles: pd.DataFrame, *, config: RecomputeConfig, shares: dict[str, Any]
) -> tuple[list[NewSnapshot], list[str]]:
    """Snapshots for every category in every view; a (category, view) that fails is logged and
    named, the rest go on. The battles are coded once; each table is a mask over them. The
    tables are spread over config.processes processes (forked_map), in the same order."""
    duplicates = duplicate_rows(battles)
    shared = {"votes_total": int((~duplicates).sum()), **shares}
    coded = CodedBattles(battles)
    # Which battles have style features: the same for every table, worked out once.
    styled = styled_rows(battles)
    views = stored_views(battles) if config.views else (PLAIN,)
    kept_by_view = {
        view: view_mask(battles, view, min_prompt_tokens=config.min_prompt_tokens) for view in views
    }
    made: list[NewSnapshot] = []
    failed: list[str] = []
    tables: list[tuple[str, str, BoolArray]] = []
    # A view keeping duplicates whose category has none is its deduplicated twin again: copied,
    # not computed ((category, the twin's view), the view it is stored under).
    twins: list[tuple[tuple[str, str], str]] = []
    for category in snapshot_categories(battles, ~duplicates):
        try:
            in_category = category_rows(battles, category)
        except Exception:
            log.exception("recompute: category %s failed; its last good snapshots stay", category)
            failed.append(category)
            continue
        for view in views:
            rows = in_category & kept_by_view[view]
            if keeps_duplicates(view) and not (rows & duplicates).any():
                twins.append(((category, view_key(view_exclusions(view))), view))
            else:
                tables.append((category, view, rows))

    def table(index: int) -> tuple[list[NewSnapshot], str | None]:
        category, view, rows = tables[index]
        try:
            made = category_snapshots(
                category,
                coded,
                rows,
                battles=battles,
                config=config,
                shared_extras=shared,
                view=view,
                styled=styled,
            )
        except Exception:
            # One broken table must not hold back the others; the reason goes to the log.
            log.exception(
                "recompute: category %s, view %r failed; its last good snapshot stays",
                category,
                view,
            )
            return [], category if view == PLAIN else f"{category} ({view})"
        return made, None

    # A table's cost: a part that grows with its battles, and the bootstrap's, which does not.
    costs = [float(rows.sum()) + _TABLE_FIXED_COST for _, _, rows in tables]
    results = forked_map(table, costs, processes=config.processes)
    for table_made, table_failed in results:
        made.extend(table_made)
        if table_failed is not None:
            failed.append(table_failed)
    index = {(category, view): i for i, (category, view, _) in enumerate(tables)}
    for twin, view in twins:
        made.extend(twin_snapshot(s, view, config) for s in results[index[twin]][0])
    return made, failed


def twin_snapshot(snapshot: NewSnapshot, view: str, config: RecomputeConfig) -> NewSnapshot:
    """A table stored again under the view that keeps duplicates, for a category that has none:
    the same votes, hence the same numbers and vote-set hash; its params name the view."""
    return replace(
        snapshot,
        view=view,
        params={**snapshot.params, **view_params(view, config)},
        extras={k: v for k, v in snapshot.extras.items() if k != GAINS_KEY},
    )


def kept_snapshot_ids(stamps: Sequence[tuple[int, datetime]], now: datetime) -> set[int]:
    """Which snapshots of one table to keep: the newest; then the newest of each HISTORY_TIERS
    bucket (five minutes for two hours, an hour for two days), and of each day before that."""
    if not stamps:
        return set()
    newest_first = sorted(stamps, key=lambda s: (s[1], s[0]), reverse=True)
    kept = {newest_first[0][0]}
    seen: set[tuple[float, int]] = set()
    for snapshot_id, moment in newest_first:
        age = now - moment
        width = next((w for within, w in HISTORY_TIERS if age <= within), timedelta(days=1))
        seconds = width.total_seconds()
        bucket = (seconds, int(moment.timestamp() // seconds))
        if bucket not in seen:
            seen.add(bucket)
            kept.add(snapshot_id)
    return kept


def store_snapshots(session: Session, made: Sequence[NewSnapshot], *, computed_at: datetime) -> int:
    """Add the new snapshots; thin each table's history and drop the plot tables of older ones.

    A few statements whatever the number of tables: one read of the history's times, one delete,
    one read and one update of the superseded snapshots' extras."""
    session.add_all(
        RatingSnapshot(
            computed_at=computed_at,
            method=snapshot.method,
            category=snapshot.category,
            params=snapshot.params,
            vote_set_hash=snapshot.vote_set_hash,
            n_votes=snapshot.n_votes,
            rows=snapshot.rows,
            extras=snapshot.extras,
            view=snapshot.view,
        )
        for snapshot in made
    )
    session.flush()
    tables = {(snapshot.method, snapshot.category, snapshot.view) for snapshot in made}
    history: dict[tuple[str, str, str], list[tuple[int, datetime]]] = {}
    for snapshot_id, method, category, view, moment in session.execute(
        select(
            RatingSnapshot.id,
            RatingSnapshot.method,
            RatingSnapshot.category,
            RatingSnapshot.view,
            RatingSnapshot.computed_at,
        )
    ):
        if (method, category, view) in tables:
            history.setdefault((method, category, view), []).append((int(snapshot_id), moment))
    dropped: list[int] = []
    superseded: list[int] = []
    for stamps in history.values():
        by_age = sorted(stamps, key=lambda s: (s[1], s[0]), reverse=True)
        kept = kept_snapshot_ids(stamps, computed_at)
        dropped += [snapshot_id for snapshot_id, _ in stamps if snapshot_id not in kept]
        # The matrices serve the current page only; history keeps the rows and the short facts.
        # Older snapshots lost theirs when superseded, so only the one just superseded changes.
        if len(by_age) > 1 and by_age[1][0] in kept:
            superseded.append(by_age[1][0])
    for chunk in _chunks(dropped):
        session.execute(delete(RatingSnapshot).where(RatingSnapshot.id.in_(chunk)))
    if session.get_bind().dialect.name == "postgresql":
        # In the database: reading the superseded matrices back (100 MB of JSON for a million
        # votes with a judge) only to drop them cost more than a second.
        for chunk in _chunks(superseded):
            session.execute(_TRIM_EXTRAS, {"kept": list(KEPT_EXTRAS), "ids": list(chunk)})
        session.flush()
        return len(made)
    trimmed = []
    for chunk in _chunks(superseded):
        for snapshot_id, extras in session.execute(
            select(RatingSnapshot.id, RatingSnapshot.extras).where(RatingSnapshot.id.in_(chunk))
        ):
            if set(extras) - set(KEPT_EXTRAS):
                kept_extras = {k: v for k, v in extras.items() if k in KEPT_EXTRAS}
                trimmed.append({"id": snapshot_id, "extras": kept_extras})
    if trimmed:
        session.execute(update(RatingSnapshot), trimmed)
    session.flush()
    return len(made)


# PostgreSQL: each snapshot's extras with only the KEPT_EXTRAS keys.
_TRIM_EXTRAS: Final = text(
    "UPDATE rating_snapshot SET extras = ("
    " SELECT coalesce(json_object_agg(kept.key, kept.value), '{}'::json)"
    " FROM json_each(rating_snapshot.extras) AS kept WHERE kept.key = ANY(:kept))"
    " WHERE id = ANY(:ids)"
)


def _chunks(ids: Sequence[int], size: int = 500) -> list[Sequence[int]]:
    """`ids` in pieces small enough for one IN list (SQLite binds at most 32,766 values)."""
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def recompute(
    engine: Engine, *, config: RecomputeConfig, seen: SeenSnapshots | None = None
) -> RecomputeOutcome:
    """Tag the newly voted battles, load the counted votes, compute every table and store them:
    ran=False, without any work, if `seen` is given and snapshots were stored since.

    Three transactions, so that on SQLite the write lock is held only to tag and to store, never
    while the tables are computed (tens of seconds at a million votes), when every vote would
    wait for it. Tags are facts of a battle, kept even if the run fails later; the snapshots are
    stored all together or not at all. The caller holds the job lock throughout.
    """
    started = time.perf_counter()
    if config.anchor:
        parse_anchor(config.anchor)  # a malformed setting fails the whole run, before any work
    with Session(engine) as session, session.begin():
        if seen is not None:
            latest = session.scalar(select(func.max(RatingSnapshot.computed_at)))
            if latest is not None and (seen.latest is None or latest > seen.latest):
                log.info("recompute: another worker recomputed meanwhile; skipped")
                return RecomputeOutcome(ran=False)
        # Votes cast while this run computes wait for the next: they are not tagged yet.
        up_to_vote = session.scalar(select(func.max(Vote.id)))
        tag_voted_battles(session)
    with Session(engine) as session, session.begin():
        computed_at = utcnow()
        battles = load_counted_battles(
            session, tag_missing=False, with_duplicates=True, up_to_vote=up_to_vote or 0
        )
        counted = int((~duplicate_rows(battles)).sum())
        if counted == 0:
            log.info("recompute: no counted votes yet, nothing to rate")
            return RecomputeOutcome(ran=True, seconds=time.perf_counter() - started)
        shares = {
            **sampling_shares(
                session, now=computed_at, window=timedelta(seconds=config.vote_window_seconds)
            ),
            **named_votes(session),
        }
    log.info("recompute: %d votes loaded in %.2f s", counted, time.perf_counter() - started)
    # The matrices here are small; BLAS's own threads only spin against the bootstrap's threads
    # and the forked processes (a million votes: 11 s on one process with them, 9.7 s without).
    with threadpool_limits(limits=1, user_api="blas"):
        made, failed = compute_snapshots(battles, config=config, shares=shares)
    with Session(engine) as session, session.begin():
        stored = store_snapshots(session, made, computed_at=computed_at)
    seconds = time.perf_counter() - started
    log.info(
        "recompute: %d votes, %d snapshots stored in %.2f s%s",
        counted,
        stored,
        seconds,
        f"; failed categories: {', '.join(failed)}" if failed else "",
    )
    return RecomputeOutcome(
        ran=True,
        stored=stored,
        n_votes=counted,
        failed=tuple(failed),
        seconds=seconds,
        computed_at=computed_at,
    )


@dataclass(frozen=True)
class SeenSnapshots:
    """What a worker saw when it decided to recompute: the newest snapshot's time (None: none)."""

    latest: datetime | None


def run_recompute(config: RecomputeConfig, seen: SeenSnapshots | None = None) -> RecomputeOutcome:
    """One recompute under the job lock, committed; returns ran=False if another worker holds it,
    or, given `seen`, if another worker stored snapshots since this one decided to run.

    Several instances watch the same votes and may decide at the same moment; the second to get
    the lock would redo the first one's work on the same votes. A failure stores no snapshot,
    so the last good ones stay.
    """
    # Before the job lock: loading numba's kernels takes a second or more (compiling them after
    # an install, tens of seconds), time in which another worker could have the job.
    warm_compiled_kernels()
    engine = make_sync_engine(
        config.database_url, json_serializer=fast_json, json_deserializer=orjson.loads
    )
    try:
        with hold_job_lock(engine, JOB_NAME) as got:
            if not got:
                log.info("recompute: another worker is recomputing; skipped")
                return RecomputeOutcome(ran=False)
            return recompute(engine, config=config, seen=seen)
    finally:
        engine.dispose()
