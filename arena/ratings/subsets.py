"""Many tables from one battles table: coded and hashed once, then each table is a row mask.

The recompute job rates every category in every view of the same counted votes. Coding the
model names (hashing a million strings) and sorting the vote ids for the vote-set hash are most
of the cost of a table; done once here, a table costs a few array selections.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from arena.ratings.battles import (
    EncodedBattles,
    FloatArray,
    IntArray,
    encode_battles,
    timestamps,
    vote_set_hash,
)
from arena.ratings.categories import BoolArray

_RECENT_SUBSETS: Final = 2


@dataclass(frozen=True)
class BattleSubset:
    """Some rows of a CodedBattles: coded over the models they hold (sorted by name, as
    encode_battles codes them), with their vote-set hash and a table holding their tstamp
    column only (online Elo's order)."""

    encoded: EncodedBattles
    vote_hash: str
    battles: pd.DataFrame

    @property
    def n_battles(self) -> int:
        return self.encoded.n_battles


class CodedBattles:
    """A battles table coded once; `subset(mask)` gives any of its row subsets coded and hashed
    exactly as encode_battles and vote_set_hash would code and hash that subset on its own."""

    def __init__(self, battles: pd.DataFrame) -> None:
        self.encoded = encode_battles(battles)
        self.tstamp: FloatArray | None = timestamps(battles)
        self.n_rows = len(battles)
        # The vote ids sorted as text (vote_set_hash's order), as one buffer of UTF-8 lines and
        # each line's length: a subset's hashed text is the lines it keeps, cut out with one
        # vectorised selection (joining a million strings per table cost 2 s of a recompute).
        self._id_order: IntArray | None = None
        self._id_lines: npt.NDArray[np.uint8] | None = None
        self._id_line_lengths: IntArray | None = None
        self._recent: dict[bytes, BattleSubset] = {}
        if "vote_id" in battles.columns:
            texts = [str(v) for v in battles["vote_id"].tolist()]
            order = np.argsort(np.array(texts, dtype=np.str_), kind="stable").astype(np.int64)
            lines = [texts[i].encode() + b"\n" for i in order.tolist()]
            self._id_order = order
            self._id_line_lengths = np.fromiter(map(len, lines), np.int64, len(lines))
            self._id_lines = np.frombuffer(b"".join(lines), dtype=np.uint8)

    def _frame(self, mask: BoolArray) -> pd.DataFrame:
        if self.tstamp is None:
            return pd.DataFrame(index=pd.RangeIndex(int(mask.sum())))
        return pd.DataFrame({"tstamp": self.tstamp[mask]})

    def subset(self, mask: BoolArray) -> BattleSubset:
        # A table's style-controlled methods ask again for the rows its other methods had (every
        # battle with style features, as is usual): the last two subsets (all the table's rows,
        # those of its rateable models) are kept for them.
        key = np.packbits(mask).tobytes()
        known = self._recent.get(key)
        if known is not None:
            return known
        made = self._subset(mask)
        self._recent[key] = made
        if len(self._recent) > _RECENT_SUBSETS:
            del self._recent[next(iter(self._recent))]
        return made

    def _subset(self, mask: BoolArray) -> BattleSubset:
        enc = self.encoded
        a, b, outcome = enc.a[mask], enc.b[mask], enc.outcome[mask]
        used = np.zeros(len(enc.models), dtype=bool)
        used[a] = True
        used[b] = True
        position = np.cumsum(used) - 1
        models = tuple(name for name, kept in zip(enc.models, used, strict=True) if kept)
        encoded = EncodedBattles(
            models=models, a=position[a], b=position[b], outcome=outcome.copy()
        )
        frame = self._frame(mask)
        if (
            self._id_order is not None
            and self._id_lines is not None
            and self._id_line_lengths is not None
        ):
            kept = np.repeat(mask[self._id_order], self._id_line_lengths)
            text = self._id_lines[kept].tobytes()
            digest = hashlib.sha256(b"arena-vote-ids-v1\n")
            digest.update(text[:-1])  # the ids one per line: no newline after the last
            vote_hash = digest.hexdigest()
        else:
            vote_hash = vote_set_hash(frame, encoded) if len(frame) else _empty_rows_hash()
        return BattleSubset(encoded=encoded, vote_hash=vote_hash, battles=frame)

    def rows_of_models(self, names: set[str]) -> BoolArray:
        """Which rows are battles between two of the named models."""
        keep = np.array([name in names for name in self.encoded.models], dtype=bool)
        return np.asarray(keep[self.encoded.a] & keep[self.encoded.b], dtype=bool)


def _empty_rows_hash() -> str:
    digest = hashlib.sha256(b"arena-vote-rows-v1\n")
    digest.update(b"0 0\n")
    return digest.hexdigest()
