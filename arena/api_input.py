"""What every schema of a request body shares: a field it does not know is refused, and a value
that does not have the required form is told what form to take."""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError


class InputSchema(BaseModel):
    """The base of every request body's schema. A field the schema does not know gets a 422
    naming it instead of being ignored: a misspelt optional field would otherwise be dropped
    without a word and the request carried out without it."""

    model_config = ConfigDict(extra="forbid")


def must_match(pattern: str, meaning: str) -> Callable[[str], str]:
    """A validator refusing text that does not match `pattern`, saying `meaning` (what to write
    instead) rather than the pattern, which no person filling in a form should have to read.
    Used with `Field(json_schema_extra={"pattern": pattern})` so that the API's schema still
    shows the pattern to programs."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.search(value) is None:
            raise PydanticCustomError("string_pattern_mismatch", meaning)
        return value

    return check
