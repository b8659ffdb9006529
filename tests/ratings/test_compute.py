"""compute_leaderboard: the JSON shape, the pinned defaults, anchors and argument errors."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from arena import ratings
from arena.ratings import (
    InvalidBattles,
    compute_leaderboard,
    parse_anchor,
)
from arena.ratings.intervals import HESSIAN_RIDGE, z_value
from tests.ratings.simulate import simulate_battles


def test_defaults_are_pinned() -> None:
    assert (ratings.ELO_K, ratings.SCALE, ratings.BASE, ratings.INIT_RATING) == (4, 400, 10, 1000)
    assert ratings.DEFAULT_BOOTSTRAP_ROUNDS == 100
    assert ratings.CONFIDENCE == 0.95
    assert HESSIAN_RIDGE == 1e-5
    assert z_value(0.95) == pytest.approx(1.959963984540054)
    defaults = {
        name: p.default for name, p in inspect.signature(compute_leaderboard).parameters.items()
    }
    assert defaults["method"] == "bt"
    assert defaults["bootstrap_rounds"] is None
    assert (defaults["k"], defaults["scale"], defaults["base"], defaults["init"]) == (
        4,
        400,
        10,
        1000,
    )
    assert defaults["reweighted"] is False
    assert defaults["anchor"] is None
    for name in ("online_elo",):
        params = inspect.signature(getattr(ratings, name)).parameters
        assert (params["k"].default, params["scale"].default, params["init"].default) == (
            4,
            400,
            1000,
        )


def test_json_has_exactly_the_documented_shape() -> None:
    rng = np.random.default_rng(0)
    battles = simulate_battles(rng.normal(0, 1, 4), 800, rng, tie_share=0.1)
    board = compute_leaderboard(battles, anchor=("model-01", 1114.0))
    data = json.loads(json.dumps(board.to_json_dict(), allow_nan=False))
    assert set(data) == {"method", "params", "vote_set_hash", "n_battles", "models", "fragility"}
    assert data["method"] == "bt"
    assert data["n_battles"] == 800
    assert data["params"]["interval"] == "sandwich"
    assert data["params"]["anchor"] == {"model": "model-01", "rating": 1114.0}
    rows = data["models"]
    assert [set(r) for r in rows] == [
        {"model", "rating", "ci_lower", "ci_upper", "rank", "votes", "win_rate", "swap_votes"}
    ] * 4
    assert set(data["fragility"]) == {"method", "first_place", "adjacent"}
    assert [s["above"] for s in data["fragility"]["adjacent"]] == [r["model"] for r in rows[:-1]]
    assert [r["swap_votes"] for r in rows] == [
        *(s["votes"] for s in data["fragility"]["adjacent"]),
        None,
    ]
    assert [r["rating"] for r in rows] == sorted((r["rating"] for r in rows), reverse=True)
    assert sum(r["votes"] for r in rows) == 2 * 800
    assert all(r["ci_lower"] < r["rating"] < r["ci_upper"] for r in rows)
    frame = board.to_frame()
    assert list(frame.columns) == list(ratings.LEADERBOARD_COLUMNS)
    assert frame["model"].tolist() == [r["model"] for r in rows]


def test_elo_with_bootstrap_reports_the_median() -> None:
    rng = np.random.default_rng(3)
    battles = simulate_battles(rng.normal(0, 1, 4), 300, rng)
    board = compute_leaderboard(battles, method="elo", bootstrap_rounds=30, seed=4)
    assert board.intervals is not None and board.intervals.median is not None
    by_model = dict(zip(board.models, board.intervals.median, strict=True))
    assert all(row.rating == by_model[row.model] for row in board.rows)
    assert board.params["k"] == 4 and board.params["bootstrap_rounds"] == 30


def test_zero_rounds_means_no_bootstrap() -> None:
    rng = np.random.default_rng(3)
    battles = simulate_battles(rng.normal(0, 1, 3), 300, rng)
    assert compute_leaderboard(battles, bootstrap_rounds=0).params["interval"] == "sandwich"


def test_argument_errors() -> None:
    rng = np.random.default_rng(3)
    battles = simulate_battles(rng.normal(0, 1, 3), 300, rng)
    with pytest.raises(InvalidBattles, match="method must be one of bt, elo"):
        compute_leaderboard(battles, method="glicko")  # type: ignore[arg-type]
    with pytest.raises(InvalidBattles, match="Bradley-Terry only"):
        compute_leaderboard(battles, method="elo", reweighted=True)
    with pytest.raises(InvalidBattles, match="anchor model 'gpt-x' is not among the 3"):
        compute_leaderboard(battles, anchor=("gpt-x", 1000.0))


def test_parse_anchor() -> None:
    assert parse_anchor("mixtral-8x7b-instruct-v0.1=1114") == ("mixtral-8x7b-instruct-v0.1", 1114.0)
    assert parse_anchor("a=b=999.5") == ("a=b", 999.5)
    for bad in ("mixtral", "=1114", "m=high", "m=nan"):
        with pytest.raises(InvalidBattles, match="MODEL=RATING"):
            parse_anchor(bad)
    assert not math.isnan(parse_anchor("m=-5")[1])


def test_importing_the_engine_pulls_in_no_web_or_database_code() -> None:
    code = (
        "import sys, arena.ratings, arena.ratings.categories\n"
        "bad = [m for m in ('fastapi', 'sqlalchemy', 'httpx', 'jinja2', 'typer', 'starlette')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_warming_compiles_every_kernel_the_tables_run() -> None:
    # After the warm-up, rating real battles compiles nothing more: the recompute warms up
    # before its job lock, so no compile ever happens while it holds the job.
    from arena.ratings.bradley_terry import _chord_kernel
    from arena.ratings.compute import warm_compiled_kernels
    from arena.ratings.elo import _in_order_kernel
    from arena.ratings.guide_tables import add_draws, invert_poisson

    warm_compiled_kernels()
    kernels = [_chord_kernel(), invert_poisson, add_draws, _in_order_kernel()]
    warmed = [len(kernel.signatures) for kernel in kernels]  # type: ignore[attr-defined]
    assert all(warmed)
    rng = np.random.default_rng(3)
    battles = simulate_battles(rng.normal(0, 1, 12), 3000, rng, tie_share=0.1)
    compute_leaderboard(battles, bootstrap_rounds=20, seed=1)
    compute_leaderboard(battles, method="elo")
    assert [len(kernel.signatures) for kernel in kernels] == warmed  # type: ignore[attr-defined]


def test_a_new_process_loads_every_kernel_from_the_disk_cache() -> None:
    # Compiling takes seconds; every recompute worker and every server start would pay it if a
    # kernel's cache entry did not match in the next process (as happens to numba closures).
    code = (
        "from arena.ratings.compute import warm_compiled_kernels\n"
        "from arena.ratings.bradley_terry import _chord_kernel\n"
        "from arena.ratings.elo import _in_order_kernel\n"
        "from arena.ratings.guide_tables import add_draws, invert_poisson\n"
        "warm_compiled_kernels()\n"
        "for k in (_chord_kernel(), invert_poisson, add_draws, _in_order_kernel()):\n"
        "    print(k.__name__, len(k.stats.cache_hits), len(k.stats.cache_misses))\n"
    )

    def loaded_and_compiled() -> dict[str, tuple[int, int]]:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
        )
        rows = (line.split() for line in out.stdout.splitlines())
        return {name: (int(hits), int(misses)) for name, hits, misses in rows}

    loaded_and_compiled()  # the first process may compile, after an install
    assert loaded_and_compiled() == {
        "chord": (1, 0),
        "invert_poisson": (1, 0),
        "add_draws": (1, 0),
        "run_in_order": (1, 0),
    }
