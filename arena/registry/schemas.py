"""What the owner and admin APIs take and answer; every input bounded, unknown fields refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arena.models import ModelStatus
from arena.registry.probe import ProbeResult

# Public names travel in URL paths, so no slash; "mine" is a route of its own.
MODEL_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}$"
RESERVED_NAMES: Final = frozenset({"mine"})
EMAIL_PATTERN: Final = r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9.-]+\.[A-Za-z0-9-]{2,}$"
# An API key goes into an HTTP header: visible ASCII only, so no header can be smuggled in.
API_KEY_PATTERN: Final = r"^[\x21-\x7e]+$"
SINGLE_LINE_PATTERN: Final = r"^[^\x00-\x1f\x7f]*$"

MaxTokens = Annotated[int, Field(strict=True, ge=1, le=32768)]
Temperature = Annotated[float, Field(strict=True, ge=0.0, le=2.0, allow_inf_nan=False)]
ShortText = Annotated[str, Field(max_length=100, pattern=SINGLE_LINE_PATTERN)]
Description = Annotated[str, Field(max_length=2000)]
SystemPrompt = Annotated[str, Field(max_length=8000)]
BaseUrl = Annotated[str, Field(min_length=1, max_length=2048)]
UpstreamModel = Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE_PATTERN)]
ApiKey = Annotated[str, Field(min_length=1, max_length=4096, pattern=API_KEY_PATTERN)]
Reason = Annotated[str, Field(max_length=500, pattern=SINGLE_LINE_PATTERN)]


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text; say so instead of failing on insert.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value


class OwnerIn(StrictIn):
    name: str = Field(min_length=1, max_length=100, pattern=SINGLE_LINE_PATTERN)
    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    invite_code: str | None = Field(default=None, min_length=1, max_length=100)


class OwnerCreated(BaseModel):
    owner_id: int
    name: str
    email: str
    # Shown once: only its hash is stored
    token: str


class OwnerToken(BaseModel):
    owner_id: int
    token: str


class OwnerOut(BaseModel):
    id: int
    name: str
    email: str
    created_at: datetime
    revoked_at: datetime | None = None
    models: int | None = None


class InviteIn(StrictIn):
    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)


class InviteOut(BaseModel):
    email: str
    code: str
    expires_at: datetime


class ModelIn(StrictIn):
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    organization: ShortText = ""
    license: ShortText = ""
    description: Description = ""
    base_url: BaseUrl
    model: UpstreamModel
    api_key: ApiKey | None = None
    max_tokens: MaxTokens = 1024
    temperature: Temperature = 0.7
    system_prompt: SystemPrompt = ""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved; choose another name")
        return value


class ModelPatch(StrictIn):
    """Only the fields sent change; `api_key: null` removes the key."""

    organization: ShortText | None = None
    license: ShortText | None = None
    description: Description | None = None
    base_url: BaseUrl | None = None
    model: UpstreamModel | None = None
    api_key: ApiKey | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    system_prompt: SystemPrompt | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> ModelPatch:
        for name in self.model_fields_set - {"api_key"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: null is not a value; leave the field out to keep it")
        if not self.model_fields_set:
            raise ValueError("nothing to change; send at least one field")
        return self


class ReasonIn(StrictIn):
    reason: Reason = ""


class RequiredReasonIn(StrictIn):
    reason: Reason = Field(min_length=1)


def _tenths(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else round(milliseconds, 1)


class ProbeOut(BaseModel):
    ok: bool
    kind: str
    field: str = ""
    reason: str = ""
    latency_ms: float | None = None
    first_token_ms: float | None = None
    sample: str = ""

    @classmethod
    def of(cls, result: ProbeResult) -> ProbeOut:
        return cls(
            ok=result.ok,
            kind=result.kind,
            field=result.field,
            reason=result.reason,
            latency_ms=_tenths(result.latency_ms),
            first_token_ms=_tenths(result.first_token_ms),
            sample=result.sample,
        )


class ModelOut(BaseModel):
    """An endpoint as its owner (or the operator) sees it: never the key, only its end."""

    id: int
    name: str
    organization: str
    license: str
    description: str
    base_url: str
    model: str
    has_api_key: bool
    api_key_last4: str | None
    max_tokens: int
    temperature: float
    system_prompt: str
    status: ModelStatus
    status_reason: str
    sampling_weight: float
    consecutive_failures: int
    created_at: datetime
    activated_at: datetime | None
    paused_at: datetime | None
    retired_at: datetime | None
    owner_email: str | None = None


class ModelRegistered(BaseModel):
    id: int
    name: str
    status: ModelStatus
    probe: ProbeOut


class ModelChanged(BaseModel):
    model: ModelOut
    probe: ProbeOut | None = None


class Percentiles(BaseModel):
    samples: int
    p50: float | None
    p90: float | None
    p99: float | None


class RatingOut(BaseModel):
    method: str
    category: str
    computed_at: datetime
    rating: float | None
    ci_lower: float | None
    ci_upper: float | None
    rank: int | None
    votes: int | None
    win_rate: float | None


class StatusEventOut(BaseModel):
    status: ModelStatus
    reason: str
    actor: str
    at: datetime


class RecentError(BaseModel):
    at: datetime
    error: str


class ModelStats(BaseModel):
    name: str
    status: ModelStatus
    status_reason: str
    # The status change that put the model where it is, and the history before it
    events: list[StatusEventOut]
    consecutive_failures: int
    circuit_breaker_threshold: int
    battles: int
    answers: int
    failed_answers: int
    error_rate: float | None
    recent_errors: list[RecentError]
    first_token_ms: Percentiles
    answer_ms: Percentiles
    votes: int
    counted_votes: int
    wins: int
    losses: int
    ties: int
    both_bad: int
    # (wins + half the ties of both kinds) / counted votes
    win_rate: float | None
    excluded_votes: int
    flagged_votes: dict[str, int]
    # This model's share of the seats in battles (each battle has two): sums to 1 over models
    sampling_share_7d: float | None
    sampling_share_all: float | None
    rating: RatingOut | None
