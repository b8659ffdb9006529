"""Server-side SVG plots for the leaderboard and model pages: no script, no network, any browser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Final

WIDTH: Final = 760
FONT: Final = 12
ROW: Final = 20
LABEL_WIDTH: Final = 190
MARGIN: Final = 16
# Heatmaps show the top models only: beyond this a cell is too small to read on a phone; the full
# matrices are in the CSV and JSON downloads.
HEATMAP_MODELS: Final = 15
MAX_CELL: Final = 56.0

_RED: Final = (202, 0, 32)
_WHITE: Final = (247, 247, 247)
_BLUE: Final = (5, 113, 176)
_PALE: Final = (239, 243, 255)
_DEEP: Final = (8, 69, 148)


def _text(value: str) -> str:
    return escape(value, quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _mix(low: tuple[int, int, int], high: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(low, high, strict=True))
    return r, g, b


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _ink_on(rgb: tuple[int, int, int]) -> str:
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return "#111111" if luminance > 140 else "#ffffff"


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high], about `count` of them (1-2-5 steps)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label_width(names: Sequence[str]) -> float:
    # About 7 px per character at FONT: wide enough for the names, never wider than LABEL_WIDTH.
    return float(min(LABEL_WIDTH, 16 + 7 * max((len(n) for n in names), default=4)))


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_num(width)} {_num(height)}" '
        f'width="{_num(width)}" height="{_num(height)}" '
        f'role="img" aria-label="{_text(label)}" class="plot" '
        f'font-family="system-ui, sans-serif" font-size="{FONT}">'
        f"<title>{_text(label)}</title>" + "".join(body) + "</svg>"
    )


@dataclass(frozen=True)
class RatingPoint:
    model: str
    rating: float
    lower: float | None
    upper: float | None


def ratings_plot(points: Sequence[RatingPoint], *, title: str) -> str:
    """Each model's rating as a dot on its own line, with its 95% interval as a bar."""
    if not points:
        return ""
    lows = [p.lower if p.lower is not None else p.rating for p in points]
    highs = [p.upper if p.upper is not None else p.rating for p in points]
    low, high = min(lows), max(highs)
    pad = max(5.0, (high - low) * 0.05)
    low, high = low - pad, high + pad
    left, right = _label_width([p.model for p in points]), WIDTH - MARGIN
    top = 8
    height = top + ROW * len(points) + 30

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    body: list[str] = []
    for tick in nice_ticks(low, high):
        tx = x(tick)
        body.append(
            f'<line x1="{_num(tx)}" y1="{top}" x2="{_num(tx)}" y2="{height - 24}" '
            f'stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text x="{_num(tx)}" y="{height - 8}" text-anchor="middle" fill="currentColor">'
            f"{_num(tick)}</text>"
        )
    for i, (point, lo, hi) in enumerate(zip(points, lows, highs, strict=True)):
        cy = top + ROW * i + ROW / 2
        tip = f"{point.model}: {point.rating:.1f}"
        if point.lower is not None and point.upper is not None:
            tip += f" (95% interval {point.lower:.1f} to {point.upper:.1f})"
        body.append(
            f'<g class="rating"><title>{_text(tip)}</title>'
            f'<text x="{left - 8}" y="{_num(cy + 4)}" text-anchor="end" fill="currentColor">'
            f"{_text(point.model)}</text>"
            f'<line x1="{_num(x(lo))}" y1="{_num(cy)}" x2="{_num(x(hi))}" y2="{_num(cy)}" '
            f'stroke="{_hex(_BLUE)}" stroke-width="3" stroke-linecap="round" '
            'stroke-opacity="0.55"/>'
            f'<circle cx="{_num(x(point.rating))}" cy="{_num(cy)}" r="4.5" fill="{_hex(_BLUE)}"/>'
            "</g>"
        )
    return _svg(WIDTH, height, title, body)


def heatmap(
    models: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    title: str,
    kind: str,
) -> str:
    """A models x models matrix as coloured cells with their values.

    kind "fraction": a share in [0, 1], red below one half, blue above (row model's wins);
    kind "count": counts, pale to deep blue.
    """
    n = min(len(models), HEATMAP_MODELS)
    if n < 2:
        return ""
    shown = list(models[:n])
    grid = [list(row[:n]) for row in values[:n]]
    finite = [
        v for i, row in enumerate(grid) for j, v in enumerate(row) if v is not None and i != j
    ]
    largest = max(finite) if finite else 1.0
    label_width = _label_width(shown)
    longest = max(len(name) for name in shown)
    # Column labels are turned 55 degrees: they rise by sin and reach right by cos of their length.
    top = min(150.0, 16 + 5.8 * longest)
    overhang = max(float(MARGIN), 4.1 * longest)
    cell = min(MAX_CELL, (WIDTH - overhang - label_width) / n)
    width = label_width + cell * n + overhang
    height = top + cell * n + 8
    body: list[str] = []
    for j, name in enumerate(shown):
        cx = label_width + cell * j + cell / 2
        body.append(
            f'<text transform="translate({_num(cx + 4)},{_num(top - 6)}) rotate(-55)" '
            f'fill="currentColor">{_text(name)}</text>'
        )
    for i, row_name in enumerate(shown):
        cy = top + cell * i
        body.append(
            f'<text x="{label_width - 6}" y="{_num(cy + cell / 2 + 4)}" text-anchor="end" '
            f'fill="currentColor">{_text(row_name)}</text>'
        )
        for j, value in enumerate(grid[i]):
            cx = label_width + cell * j
            if value is None or i == j:
                body.append(
                    f'<rect x="{_num(cx)}" y="{_num(cy)}" width="{_num(cell)}" '
                    f'height="{_num(cell)}" fill="currentColor" fill-opacity="0.06"/>'
                )
                continue
            if kind == "fraction":
                rgb = (
                    _mix(_RED, _WHITE, value * 2)
                    if value < 0.5
                    else _mix(_WHITE, _BLUE, value * 2 - 1)
                )
                shown_value = f"{value:.2f}"
                tip = f"{row_name} won {value:.0%} of decisive battles against {shown[j]}"
            else:
                rgb = _mix(_PALE, _DEEP, value / largest if largest > 0 else 0.0)
                shown_value = f"{value:.0f}"
                tip = f"{row_name} and {shown[j]}: {value:.0f} battles"
            body.append(
                f"<g><title>{_text(tip)}</title>"
                f'<rect x="{_num(cx)}" y="{_num(cy)}" width="{_num(cell)}" height="{_num(cell)}" '
                f'fill="{_hex(rgb)}" stroke="#ffffff" stroke-width="1"/>'
            )
            if cell >= 26:
                body.append(
                    f'<text x="{_num(cx + cell / 2)}" y="{_num(cy + cell / 2 + 4)}" '
                    f'text-anchor="middle" font-size="{10 if cell < 40 else 11}" '
                    f'fill="{_ink_on(rgb)}">{shown_value}</text>'
                )
            body.append("</g>")
    return _svg(width, height, title, body)


def share_plot(shares: Sequence[tuple[str, float]], *, title: str) -> str:
    """Horizontal bars: each model's share of the (settled) battles drawn."""
    if not shares:
        return ""
    left, right = _label_width([m for m, _ in shares]), WIDTH - MARGIN - 50
    top = 8
    height = top + ROW * len(shares) + 8
    largest = max(share for _, share in shares) or 1.0
    body: list[str] = []
    for i, (model, share) in enumerate(shares):
        y = top + ROW * i
        length = (right - left) * share / largest
        body.append(
            f"<g><title>{_text(f'{model}: {share:.1%} of battles')}</title>"
            f'<text x="{left - 8}" y="{_num(y + ROW / 2 + 4)}" text-anchor="end" '
            f'fill="currentColor">{_text(model)}</text>'
            f'<rect x="{left}" y="{_num(y + 3)}" width="{_num(max(length, 1.0))}" '
            f'height="{ROW - 6}" rx="2" fill="{_hex(_BLUE)}" fill-opacity="0.8"/>'
            f'<text x="{_num(left + length + 6)}" y="{_num(y + ROW / 2 + 4)}" '
            f'fill="currentColor">{share:.1%}</text></g>'
        )
    return _svg(WIDTH, height, title, body)


@dataclass(frozen=True)
class HistoryPoint:
    at: datetime
    rating: float
    lower: float | None
    upper: float | None


def history_plot(points: Sequence[HistoryPoint], *, title: str) -> str:
    """Rating over time: a line through the snapshots, with the 95% interval as a band."""
    if not points:
        return ""
    points = sorted(points, key=lambda p: p.at)
    left, right, top, bottom = 56, WIDTH - MARGIN, 10, 250
    height = bottom + 30
    lows = [p.lower if p.lower is not None else p.rating for p in points]
    highs = [p.upper if p.upper is not None else p.rating for p in points]
    low, high = min(lows), max(highs)
    pad = max(5.0, (high - low) * 0.08)
    low, high = low - pad, high + pad
    start, end = points[0].at.timestamp(), points[-1].at.timestamp()
    span = end - start

    def x(moment: datetime) -> float:
        if span <= 0:
            return (left + right) / 2
        return left + (moment.timestamp() - start) / span * (right - left)

    def y(value: float) -> float:
        return bottom - (value - low) / (high - low) * (bottom - top)

    body: list[str] = []
    for tick in nice_ticks(low, high, 5):
        ty = y(tick)
        body.append(
            f'<line x1="{left}" y1="{_num(ty)}" x2="{right}" y2="{_num(ty)}" '
            f'stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text x="{left - 6}" y="{_num(ty + 4)}" text-anchor="end" fill="currentColor">'
            f"{_num(tick)}</text>"
        )
    body.append(
        f'<text x="{left}" y="{height - 6}" fill="currentColor">'
        f"{_text(points[0].at.strftime('%Y-%m-%d %H:%M'))}</text>"
    )
    if span > 0:
        body.append(
            f'<text x="{right}" y="{height - 6}" text-anchor="end" fill="currentColor">'
            f"{_text(points[-1].at.strftime('%Y-%m-%d %H:%M'))}</text>"
        )
    band = [(x(p.at), y(hi)) for p, hi in zip(points, highs, strict=True)] + [
        (x(p.at), y(lo)) for p, lo in reversed(list(zip(points, lows, strict=True)))
    ]
    if any(p.lower is not None for p in points):
        body.append(
            '<polygon points="'
            + " ".join(f"{_num(px)},{_num(py)}" for px, py in band)
            + f'" fill="{_hex(_BLUE)}" fill-opacity="0.15"/>'
        )
    line = " ".join(f"{_num(x(p.at))},{_num(y(p.rating))}" for p in points)
    body.append(f'<polyline points="{line}" fill="none" stroke="{_hex(_BLUE)}" stroke-width="2"/>')
    for p in points:
        tip = f"{p.at.strftime('%Y-%m-%d %H:%M')} UTC: {p.rating:.1f}"
        body.append(
            f"<g><title>{_text(tip)}</title>"
            f'<circle cx="{_num(x(p.at))}" cy="{_num(y(p.rating))}" r="3" '
            f'fill="{_hex(_BLUE)}"/></g>'
        )
    return _svg(WIDTH, height, title, body)
