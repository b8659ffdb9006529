"""The one CSV writer: text that would start a formula is marked as text, numbers stay numbers."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from arena.spreadsheet_csv import Cell, csv_text

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_formula_text_gets_a_quote_and_numbers_do_not() -> None:
    rows: list[list[Cell]] = [
        ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "ok", "", "'quoted", "a=b"],
        [-12.5, -3, 0.1 + 0.2, None, 1e-300, True, "-12.5"],
    ]
    assert _read(csv_text(rows)) == [
        ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "ok", "", "'quoted", "a=b"],
        ["-12.5", "-3", "0.30000000000000004", "", "1e-300", "True", "'-12.5"],
    ]


def test_line_breaks_inside_a_cell_stay_inside_it() -> None:
    text = csv_text([["a\rb", "c\r\nd", "e\nf"], ["next"]])
    assert _read(text) == [["a\rb", "c\r\nd", "e\nf"], ["next"]]


cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(FORMULA_STARTS).flatmap(lambda start: st.text(max_size=8).map(start.__add__)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(),
    st.none(),
)


@given(st.lists(st.lists(cells, min_size=1, max_size=5), min_size=1, max_size=5))
def test_no_cell_is_read_back_as_a_formula_and_nothing_else_changes(
    rows: list[list[Cell]],
) -> None:
    read = _read(csv_text(rows))
    assert len(read) == len(rows)
    for written, got in zip(rows, read, strict=True):
        assert len(got) == len(written)
        for cell, back in zip(written, got, strict=True):
            if isinstance(cell, str):
                assert not back.startswith(FORMULA_STARTS)
                assert back == ("'" + cell if cell.startswith(FORMULA_STARTS) else cell)
            elif cell is None:
                assert back == ""
            elif isinstance(cell, int):  # numbers, negative ones too, are read back as such
                assert int(back) == cell
            else:
                assert float(back) == cell
