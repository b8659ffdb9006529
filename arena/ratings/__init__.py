"""The rating engine: from a battles table to ratings, intervals and tables (DESIGN section 7).

Imports numpy, pandas and scipy only, never the web or the database. The usual entry point:

    loaded = read_battles_file("clean_battle.json")      # or a DataFrame from the database
    board = compute_leaderboard(loaded.battles, method="bt")   # sandwich intervals
    board.to_json_dict(); board.to_frame()

The battles table has columns model_a, model_b, winner (one of WINNERS) and optionally tstamp,
vote_id, turn, anony, language, judge, prompt, answer_a, answer_b.
"""

from arena.ratings.battles import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    WINNERS,
    EncodedBattles,
    LoadedBattles,
    PairCounts,
    Winner,
    aggregate_battles,
    drop_non_anonymous,
    encode_battles,
    read_battles_file,
    validate_battles,
    vote_set_hash,
)
from arena.ratings.bradley_terry import (
    BradleyTerryFit,
    bradley_terry_ratings,
    check_ratings_exist,
    fit_bradley_terry,
)
from arena.ratings.categories import (
    FIXED_CATEGORIES,
    available_categories,
    category_mask,
    detect_language,
    filter_battles,
)
from arena.ratings.compute import (
    LEADERBOARD_COLUMNS,
    METHODS,
    Leaderboard,
    LeaderboardRow,
    Method,
    compute_leaderboard,
    parse_anchor,
    with_fragility,
)
from arena.ratings.elo import BASE, ELO_K, INIT_RATING, SCALE, online_elo
from arena.ratings.errors import InvalidBattles, RatingsError, RatingsUndefined
from arena.ratings.fragility import Fragility, Removal, Swap, rank_fragility
from arena.ratings.intervals import (
    CONFIDENCE,
    DEFAULT_BOOTSTRAP_ROUNDS,
    RatingIntervals,
    rank_upper_bound,
    sandwich_intervals,
)
from arena.ratings.matrices import (
    average_win_rate,
    battle_count_matrix,
    battle_count_values,
    predicted_win_matrix,
    predicted_win_values,
    votes_per_model,
    win_fraction_matrix,
    win_fraction_values,
)
from arena.ratings.style_control import (
    CONVENTIONS,
    STYLE_COLUMNS,
    STYLE_ELEMENTS,
    Convention,
    StyleCoefficient,
    StyleControlFit,
    bootstrap_style_control,
    fit_style_control,
    style_arrays,
    style_sandwich_covariance,
)

__all__ = [
    "CONVENTIONS",
    "STYLE_COLUMNS",
    "STYLE_ELEMENTS",
    "Convention",
    "StyleCoefficient",
    "StyleControlFit",
    "bootstrap_style_control",
    "fit_style_control",
    "style_arrays",
    "style_sandwich_covariance",
    "BASE",
    "CONFIDENCE",
    "DEFAULT_BOOTSTRAP_ROUNDS",
    "ELO_K",
    "FIXED_CATEGORIES",
    "INIT_RATING",
    "LEADERBOARD_COLUMNS",
    "METHODS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCALE",
    "WINNERS",
    "BradleyTerryFit",
    "EncodedBattles",
    "Fragility",
    "InvalidBattles",
    "Leaderboard",
    "LeaderboardRow",
    "LoadedBattles",
    "Method",
    "PairCounts",
    "RatingIntervals",
    "RatingsError",
    "RatingsUndefined",
    "Removal",
    "Swap",
    "Winner",
    "aggregate_battles",
    "available_categories",
    "average_win_rate",
    "battle_count_matrix",
    "battle_count_values",
    "bradley_terry_ratings",
    "category_mask",
    "check_ratings_exist",
    "compute_leaderboard",
    "detect_language",
    "drop_non_anonymous",
    "encode_battles",
    "filter_battles",
    "fit_bradley_terry",
    "online_elo",
    "parse_anchor",
    "predicted_win_matrix",
    "predicted_win_values",
    "rank_fragility",
    "rank_upper_bound",
    "read_battles_file",
    "sandwich_intervals",
    "validate_battles",
    "vote_set_hash",
    "votes_per_model",
    "win_fraction_matrix",
    "win_fraction_values",
    "with_fragility",
]
