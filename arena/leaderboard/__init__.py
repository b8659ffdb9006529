"""The public leaderboard: the recompute job, its snapshots, pages and open-data downloads."""
