"""The battles table: its schema, FastChat clean-battle files, the vote-set hash and pair counts."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from arena.ratings.category_tags import with_judge_columns
from arena.ratings.dedup_tags import sampled_rows
from arena.ratings.errors import InvalidBattles
from arena.ratings.views import DUPLICATE_COLUMN, PROMPT_TOKENS_COLUMN, duplicate_rows

Winner = Literal["model_a", "model_b", "tie", "tie (bothbad)"]
WINNERS: Final[tuple[Winner, ...]] = ("model_a", "model_b", "tie", "tie (bothbad)")
REQUIRED_COLUMNS: Final[tuple[str, ...]] = ("model_a", "model_b", "winner")
# Read when present: tstamp orders online Elo; vote_id feeds the vote-set hash; the text columns
# and the precomputed tag_* flags feed the category filters; conv_metadata (FastChat's style
# counts, or the style_* columns) feeds style control; category_tag (FastChat's judge labels, or
# the flattened judged / judge_* columns of a CSV) feeds the judged categories and the refusals
# view, prompt_tokens the short-prompts view, dedup_tag (or a CSV's dedup_sampled) which votes
# were held back beyond the duplicate-prompt limit; the rest are FastChat's clean-battle columns,
# carried through.
OPTIONAL_COLUMNS: Final[tuple[str, ...]] = (
    "tstamp",
    "vote_id",
    "turn",
    "anony",
    "language",
    "judge",
    "prompt",
    "answer_a",
    "answer_b",
    "tag_coding",
    "tag_long",
    "tag_vision",
    "conv_metadata",
    "category_tag",
    "prompt_tokens",
    "dedup_tag",
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Above this many (model, model, outcome) bins, bincount's dense table would outgrow np.unique.
_DENSE_BINS_LIMIT: Final = 30_000_000
_PARALLEL_ROWS: Final = 200_000
# Read as text whatever they look like: names and ids must not become numbers.
_CSV_TEXT_COLUMNS: Final = (
    "model_a",
    "model_b",
    "winner",
    "vote_id",
    "judge",
    "category_judge",
)


@dataclass(frozen=True)
class EncodedBattles:
    """The battles as integer codes: `models` sorted by name, `outcome` indexes WINNERS."""

    models: tuple[str, ...]
    a: IntArray
    b: IntArray
    outcome: IntArray

    @property
    def n_battles(self) -> int:
        return int(self.a.shape[0])

    @cached_property
    def cell(self) -> IntArray:
        """Each battle's cell as one integer: (model_a * models + model_b) * 4 + outcome."""
        return (self.a * len(self.models) + self.b) * 4 + self.outcome

    @cached_property
    def cells(self) -> tuple[IntArray, IntArray]:
        """The distinct cells that occur, ascending, and how many battles fall in each."""
        m = len(self.models)
        if m * m * 4 <= _DENSE_BINS_LIMIT:
            table = np.bincount(self.cell, minlength=m * m * 4)
            present = np.flatnonzero(table)
            return present.astype(np.int64), table[present].astype(np.int64)
        keys, counts = np.unique(self.cell, return_counts=True)
        return keys.astype(np.int64), counts.astype(np.int64)


@dataclass(frozen=True)
class PairCounts:
    """Battles aggregated per unordered pair of models: the sufficient statistics of every fit here.

    For pair k, lo[k] < hi[k] index models; `wins_lo` counts battles won by the lo model (from
    either side), `wins_hi` those won by the hi model, `ties` both tie kinds. Only pairs that met at
    least once are listed.
    """

    models: tuple[str, ...]
    lo: IntArray
    hi: IntArray
    wins_lo: IntArray
    ties: IntArray
    wins_hi: IntArray

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_pairs(self) -> int:
        return int(self.lo.shape[0])

    @property
    def totals(self) -> IntArray:
        return self.wins_lo + self.ties + self.wins_hi

    @property
    def n_battles(self) -> int:
        return int(self.totals.sum())

    def votes(self) -> IntArray:
        """Battles per model (each battle counts once for each of its two models)."""
        totals = self.totals
        m = self.n_models
        return np.bincount(self.lo, totals, minlength=m).astype(np.int64) + np.bincount(
            self.hi, totals, minlength=m
        ).astype(np.int64)


@dataclass(frozen=True)
class LoadedBattles:
    """A battles file read into the battles table, with what was left out on the way."""

    battles: pd.DataFrame
    dropped_non_anonymous: int
    # Left out as FastChat's deduplicated leaderboard leaves them out: dedup_tag sampled false
    dropped_duplicates: int
    # The table coded, as its validation coded it: rating it whole need not code it again.
    encoded: EncodedBattles


def _first_labels(battles: pd.DataFrame, mask: npt.NDArray[np.bool_], limit: int = 3) -> str:
    labels = battles.index[mask][:limit].tolist()
    return ", ".join(str(label) for label in labels)


def _factorize(battles: pd.DataFrame) -> list[tuple[npt.NDArray[np.intp], Any]]:
    def factorize(column: str) -> tuple[npt.NDArray[np.intp], Any]:
        return pd.factorize(battles[column])

    if len(battles) < _PARALLEL_ROWS:
        return [factorize(c) for c in REQUIRED_COLUMNS]
    # Hashing the strings is most of the work; Arrow-backed strings release the GIL while hashing.
    with ThreadPoolExecutor(max_workers=len(REQUIRED_COLUMNS)) as pool:
        return list(pool.map(factorize, REQUIRED_COLUMNS))


def _model_names(
    battles: pd.DataFrame, column: str, codes: npt.NDArray[np.intp], uniques: Any
) -> list[str]:
    missing = codes < 0
    if missing.any():
        raise InvalidBattles(
            f"{column} is empty in {int(missing.sum())} battle(s)"
            f" (rows {_first_labels(battles, missing)}); every battle needs both model names."
        )
    return [str(name) for name in uniques]


def encode_battles(battles: pd.DataFrame) -> EncodedBattles:
    """Validate the battles table and code it as integers; InvalidBattles says what is wrong."""
    missing_columns = [c for c in REQUIRED_COLUMNS if c not in battles.columns]
    if missing_columns:
        raise InvalidBattles(
            f"the battles table lacks column(s) {', '.join(missing_columns)}; it needs"
            f" {', '.join(REQUIRED_COLUMNS)} (and tstamp for time order);"
            f" got {list(battles.columns)}."
        )
    if len(battles) == 0:
        raise InvalidBattles("there are no battles to rate.")

    (codes_a, uniques_a), (codes_b, uniques_b), (winner_codes, winner_uniques) = _factorize(battles)
    names_a = _model_names(battles, "model_a", codes_a, uniques_a)
    names_b = _model_names(battles, "model_b", codes_b, uniques_b)
    models = tuple(sorted(set(names_a) | set(names_b)))
    position = {name: i for i, name in enumerate(models)}
    a = np.array([position[n] for n in names_a], dtype=np.int64)[codes_a]
    b = np.array([position[n] for n in names_b], dtype=np.int64)[codes_b]

    if (winner_codes < 0).any():
        empty = winner_codes < 0
        raise InvalidBattles(
            f"winner is empty in {int(empty.sum())} battle(s)"
            f" (rows {_first_labels(battles, empty)}); it must be one of {', '.join(WINNERS)}."
        )
    known: dict[str, int] = {w: i for i, w in enumerate(WINNERS)}
    unknown = [str(w) for w in winner_uniques if w not in known]
    if unknown:
        bad = battles["winner"].isin(unknown).to_numpy()
        shown = ", ".join(repr(w) for w in unknown[:5])
        raise InvalidBattles(
            f"winner must be one of {', '.join(WINNERS)}; got {shown} in {int(bad.sum())} battle(s)"
            f" (rows {_first_labels(battles, bad)})."
        )
    outcome = np.array([known[str(w)] for w in winner_uniques], dtype=np.int64)[winner_codes]

    self_battles = a == b
    if self_battles.any():
        name = models[int(a[self_battles][0])]
        raise InvalidBattles(
            f"model_a and model_b are the same model in {int(self_battles.sum())} battle(s)"
            f" (first: {name!r}, rows {_first_labels(battles, self_battles)});"
            " a model cannot battle itself."
        )
    return EncodedBattles(models=models, a=a, b=b, outcome=outcome)


def validate_battles(battles: pd.DataFrame) -> None:
    """Raise InvalidBattles if the table does not follow the schema; return nothing otherwise."""
    encode_battles(battles)


def count_pairs(encoded: EncodedBattles) -> PairCounts:
    """Aggregate coded battles into per-pair win/tie/win counts (one pass over the rows)."""
    m = len(encoded.models)
    keys, n = encoded.cells
    a, b, outcome = keys // (4 * m), (keys // 4) % m, keys % 4
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # Outcome 0 is a side-a win, 1 a side-b win: the lo model won when "a won" and "a is lo" agree.
    result = np.where(outcome >= 2, 1, np.where((outcome == 0) == (a == lo), 0, 2))
    pairs, pair_of_cell = np.unique(lo * m + hi, return_inverse=True)
    counts = np.zeros((pairs.shape[0], 3), dtype=np.int64)
    np.add.at(counts, (pair_of_cell, result), n)
    return PairCounts(
        models=encoded.models,
        lo=(pairs // m).astype(np.int64),
        hi=(pairs % m).astype(np.int64),
        wins_lo=counts[:, 0].copy(),
        ties=counts[:, 1].copy(),
        wins_hi=counts[:, 2].copy(),
    )


def aggregate_battles(battles: pd.DataFrame) -> PairCounts:
    """Validate the battles table and aggregate it into pair counts."""
    return count_pairs(encode_battles(battles))


def _mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # splitmix64's finaliser: a cheap bijective scrambler, so row hashes stay distinct and uniform.
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _name_hashes(models: tuple[str, ...]) -> npt.NDArray[np.uint64]:
    return np.array(
        [int.from_bytes(hashlib.sha256(m.encode()).digest()[:8], "little") for m in models],
        dtype=np.uint64,
    )


def timestamps(battles: pd.DataFrame) -> FloatArray | None:
    if "tstamp" not in battles.columns:
        return None
    column = battles["tstamp"]
    if pd.api.types.is_datetime64_any_dtype(column):
        seconds = pd.to_datetime(column, utc=True).astype("int64").to_numpy() / 1e9
        return np.asarray(seconds, dtype=np.float64)
    try:
        return np.asarray(pd.to_numeric(column), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidBattles(
            f"tstamp must be a number of seconds since the epoch or a datetime; {exc}"
        ) from exc


def battle_order(battles: pd.DataFrame) -> IntArray:
    """Row positions by tstamp (equal stamps in table order); table order without tstamp."""
    stamps = timestamps(battles)
    if stamps is None:
        return np.arange(len(battles), dtype=np.int64)
    return np.argsort(stamps, kind="stable").astype(np.int64)


def vote_set_hash(battles: pd.DataFrame, encoded: EncodedBattles | None = None) -> str:
    """A SHA-256 hex digest identifying exactly which votes are in the table, whatever their order.

    With a `vote_id` column: the digest of the sorted ids, one per line, after the line
    `arena-vote-ids-v1`. Without: every battle (model_a, model_b, winner, tstamp) is scrambled to
    64 bits, from SHA-256 of the model names, and the digest covers `arena-vote-rows-v1`, the
    number of battles and the sum of those values modulo 2^64, so the same multiset of battles
    gives the same hash in any order.
    """
    if "vote_id" in battles.columns:
        ids = sorted(str(v) for v in battles["vote_id"].tolist())
        digest = hashlib.sha256(b"arena-vote-ids-v1\n")
        digest.update("\n".join(ids).encode())
        return digest.hexdigest()
    enc = encoded if encoded is not None else encode_battles(battles)
    m = len(enc.models)
    keys, counts = enc.cells
    names = _name_hashes(enc.models)
    cell_hash = _mix64(names[keys // (4 * m)] ^ np.uint64(0x9E3779B97F4A7C15))
    cell_hash = _mix64(cell_hash ^ names[(keys // 4) % m])
    cell_hash = _mix64(cell_hash ^ ((keys % 4).astype(np.uint64) + np.uint64(1)))
    stamps = timestamps(battles)
    if stamps is None:
        # Battles without a time are equal within a cell: weigh each cell by its count.
        total = np.sum(cell_hash * counts.astype(np.uint64), dtype=np.uint64)
    else:
        bits = stamps + 0.0  # -0.0 becomes 0.0
        if np.isnan(bits).any():
            bits[np.isnan(bits)] = np.nan  # one bit pattern for every NaN
        if m * m * 4 <= _DENSE_BINS_LIMIT:
            lookup = np.zeros(m * m * 4, dtype=np.uint64)
            lookup[keys] = cell_hash
            per_battle = lookup[enc.cell]
        else:
            per_battle = cell_hash[np.searchsorted(keys, enc.cell)]
        total = np.sum(_mix64(per_battle ^ bits.view(np.uint64)), dtype=np.uint64)
    digest = hashlib.sha256(b"arena-vote-rows-v1\n")
    digest.update(f"{enc.n_battles} {int(total)}\n".encode())
    return digest.hexdigest()


def _is_false(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return not bool(value)
    if isinstance(value, str):
        return value.strip().lower() in {"false", "0", "no"}
    if isinstance(value, int | float | np.integer | np.floating):
        return bool(value == 0)
    return False


def drop_non_anonymous(battles: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Leave out battles marked `anony: false`, as FastChat does; no flag counts as anonymous."""
    if "anony" not in battles.columns:
        return battles, 0
    column = battles["anony"]
    if pd.api.types.is_bool_dtype(column):
        named = ~column.to_numpy(dtype=bool)
    else:
        named = np.fromiter((_is_false(v) for v in column.tolist()), dtype=bool, count=len(column))
    dropped = int(named.sum())
    if dropped == 0:
        return battles, 0
    return battles.loc[~named].reset_index(drop=True), dropped


def drop_held_back_duplicates(battles: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Leave out the battles held back beyond the duplicate-prompt limit (DUPLICATE_COLUMN), and
    the column with them: what is left is the table of a file without them."""
    if DUPLICATE_COLUMN not in battles.columns:
        return battles, 0
    held_back = duplicate_rows(battles)
    kept = battles.loc[~held_back] if held_back.any() else battles
    return kept.drop(columns=DUPLICATE_COLUMN).reset_index(drop=True), int(held_back.sum())


def _turn_texts(conversation: Any, role: str) -> list[str]:
    if isinstance(conversation, np.ndarray):  # a list column read from Parquet
        conversation = conversation.tolist()
    if not isinstance(conversation, list):
        return []
    return [
        str(turn.get("content", ""))
        for turn in conversation
        if isinstance(turn, dict) and turn.get("role") == role
    ]


def _add_conversation_columns(battles: pd.DataFrame) -> pd.DataFrame:
    # FastChat's clean-battle files may carry whole conversations; the category filters read text
    # columns, so derive them here once.
    if "conversation_a" not in battles.columns:
        return battles
    battles = battles.copy()
    conv_a = battles["conversation_a"].tolist()
    if "prompt" not in battles.columns:
        battles["prompt"] = [next(iter(_turn_texts(c, "user")), "") for c in conv_a]
    if "answer_a" not in battles.columns:
        battles["answer_a"] = ["\n".join(_turn_texts(c, "assistant")) for c in conv_a]
    if "answer_b" not in battles.columns and "conversation_b" in battles.columns:
        battles["answer_b"] = [
            "\n".join(_turn_texts(c, "assistant")) for c in battles["conversation_b"].tolist()
        ]
    if "turn" not in battles.columns:
        battles["turn"] = [len(_turn_texts(c, "user")) for c in conv_a]
    return battles


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InvalidBattles(f"{path}: not valid JSON ({exc}).") from exc
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidBattles(
                    f"{path}, line {number}: not valid JSON Lines ({exc.msg})."
                ) from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidBattles(
            f"{path}: expected a JSON list of battle objects or one object per line (JSON Lines)."
        )
    return records


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV battles file through pyarrow's reader: several times faster than pandas' on a
    million rows, and its strings stay in Arrow, which pd.factorize hashes without the GIL.
    Only an empty cell is missing (as pandas' keep_default_na=False, na_values=[""])."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    header = pa_csv.ReadOptions(block_size=1 << 24)
    convert = pa_csv.ConvertOptions(
        column_types=dict.fromkeys(_CSV_TEXT_COLUMNS, pa.string()),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        table = pa_csv.read_csv(path, read_options=header, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidBattles(f"{path}: not a readable CSV file ({exc}).") from exc
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _with_prompt_tokens(battles: pd.DataFrame) -> pd.DataFrame:
    if PROMPT_TOKENS_COLUMN not in battles.columns:
        return battles
    # null where a battle's prompt was never measured: NaN, which the short-prompts view keeps
    tokens = pd.to_numeric(battles[PROMPT_TOKENS_COLUMN], errors="coerce")
    return battles.assign(
        **{PROMPT_TOKENS_COLUMN: tokens.to_numpy(dtype=np.float64, na_value=np.nan)}
    )


def read_battles_file(path: str | Path, *, keep_duplicates: bool = False) -> LoadedBattles:
    """Read a FastChat clean-battle file: JSON list, JSON Lines, or CSV or Parquet by its suffix.

    Battles marked `anony: false` are left out and counted in `dropped_non_anonymous`; the table is
    validated, so a bad winner value or a missing column fails here with the row that caused it.
    A category_tag (FastChat's judge labels) becomes the judge columns the judged categories and
    the refusals view read (category_tags.with_judge_columns), as do a CSV's flattened ones.
    Battles whose dedup_tag says `sampled: false` (a CSV's dedup_sampled false) were held back
    beyond the duplicate-prompt limit: left out and counted in `dropped_duplicates`, as FastChat's
    deduplicated leaderboard leaves them out, or with `keep_duplicates` kept and marked in
    DUPLICATE_COLUMN (the views that keep duplicates rate them). A file without dedup_tag has
    no such column.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidBattles(f"{path}: no such file.")
    if path.suffix.lower() == ".csv":
        battles = _read_csv(path)
    elif path.suffix.lower() == ".parquet":
        try:
            battles = pd.read_parquet(path)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise InvalidBattles(f"{path}: not a readable Parquet file ({exc}).") from exc
    else:
        battles = pd.DataFrame.from_records(_read_json_records(path))
    battles = _add_conversation_columns(battles)
    battles = _with_prompt_tokens(with_judge_columns(battles))
    # Read before any row is left out, so that an error names the file's rows.
    sampled = sampled_rows(battles)
    if sampled is not None:
        battles = battles.assign(**{DUPLICATE_COLUMN: ~sampled})
    battles, dropped = drop_non_anonymous(battles)
    duplicates = 0
    if sampled is not None and not keep_duplicates:
        battles, duplicates = drop_held_back_duplicates(battles)
    encoded = encode_battles(battles)  # validates the table
    return LoadedBattles(
        battles=battles,
        dropped_non_anonymous=dropped,
        dropped_duplicates=duplicates,
        encoded=encoded,
    )
