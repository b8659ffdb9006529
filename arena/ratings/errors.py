"""Exceptions of the rating engine; plain ValueErrors, so the pure core imports nothing else."""

from __future__ import annotations


class RatingsError(ValueError):
    """Base of every error the rating engine raises; the message says what to change."""


class InvalidBattles(RatingsError):
    """The battles table or file does not follow the schema (columns, winner values, models)."""


class RatingsUndefined(RatingsError):
    """The maximum-likelihood ratings do not exist for these battles.

    Raised when a model never won or never lost, or when the comparison graph falls apart into
    groups that never beat (or never met) each other: the likelihood then keeps rising as some
    ratings go to plus or minus infinity, so any finite number would be an artefact of when the
    solver stopped.
    """

    def __init__(self, message: str, *, models: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.models = models
