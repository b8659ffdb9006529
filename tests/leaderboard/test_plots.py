"""The SVG plots: well-formed, escaped, scaled; tick values round."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from arena.leaderboard import plots

SVG = "{http://www.w3.org/2000/svg}"


def test_every_plot_is_well_formed_svg_with_escaped_names() -> None:
    hostile = 'a<b>&"c'
    made = [
        plots.ratings_plot(
            [
                plots.RatingPoint(hostile, 1010.0, 990.0, 1030.0),
                plots.RatingPoint("z", 990.0, None, None),
            ],
            title="ratings",
        ),
        plots.heatmap([hostile, "z"], [[None, 0.75], [0.25, None]], title="wins", kind="fraction"),
        plots.heatmap([hostile, "z"], [[0, 12], [12, 0]], title="counts", kind="count"),
        plots.share_plot([(hostile, 0.6), ("z", 0.4)], title="shares"),
        plots.history_plot(
            [
                plots.HistoryPoint(
                    datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=h), r, r - 9, r + 9
                )
                for h, r in enumerate([1000.0, 1004.0, 1011.0])
            ],
            title="history",
        ),
    ]
    for svg in made:
        root = ET.fromstring(svg)
        assert root.tag == f"{SVG}svg" and root.get("role") == "img"
        assert float(root.get("width", "0")) > 0
        texts = "".join(root.itertext())
        assert hostile in texts or "history" in texts
        assert "<b>" not in svg


def test_heatmap_colours_follow_the_values() -> None:
    svg = plots.heatmap(["a", "b"], [[None, 0.9], [0.1, None]], title="wins", kind="fraction")
    fills = [r.get("fill") for r in ET.fromstring(svg).iter(f"{SVG}rect")]
    blues = [f for f in fills if f and f.startswith("#") and int(f[5:7], 16) > int(f[1:3], 16)]
    reds = [f for f in fills if f and f.startswith("#") and int(f[1:3], 16) > int(f[5:7], 16)]
    assert len(blues) == 1 and len(reds) == 1


def test_empty_inputs_draw_nothing() -> None:
    assert plots.ratings_plot([], title="x") == ""
    assert plots.heatmap(["only"], [[None]], title="x", kind="count") == ""
    assert plots.share_plot([], title="x") == ""
    assert plots.history_plot([], title="x") == ""


def test_nice_ticks() -> None:
    assert plots.nice_ticks(912.0, 1108.0) == [950.0, 1000.0, 1050.0, 1100.0]
    assert plots.nice_ticks(0.0, 1.0, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert plots.nice_ticks(5.0, 5.0) == [5.0]
