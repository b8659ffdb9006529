"""What every schema of a request body shares: a field it does not know is refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class InputSchema(BaseModel):
    """The base of every request body's schema. A field the schema does not know gets a 422
    naming it instead of being ignored: a misspelt optional field would otherwise be dropped
    without a word and the request carried out without it."""

    model_config = ConfigDict(extra="forbid")
