"""What the owner and admin APIs take and answer; every input bounded, unknown fields refused."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from arena.api_input import InputSchema, must_match
from arena.models import ModelStatus
from arena.registry.probe import ProbeResult

# Public names travel in URL paths, so no slash; "mine" is a route of its own.
MODEL_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}$"
RESERVED_NAMES: Final = frozenset({"mine"})
EMAIL_PATTERN: Final = r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9.-]+\.[A-Za-z0-9-]{2,}$"
# An API key goes into an HTTP header: visible ASCII only, so no header can be smuggled in.
API_KEY_PATTERN: Final = r"^[\x21-\x7e]+$"
# C0 controls (tab, line feed and carriage return among them), DEL, C1 controls, and Unicode's
# line and paragraph separators. What an owner types is shown on pages, logged, written to CSV
# and compared with answers; none of that has a use for them, and a line break or a tab in an
# organisation breaks a log line or hides the start of a spreadsheet cell.
ONE_LINE_REFUSED: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Text that is naturally several lines (the system prompt) keeps tab, line feed, carriage return
# and the Unicode separators, and refuses the other controls.
MULTI_LINE_REFUSED: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_NAMES: Final = {
    "\x00": "a NUL character",
    "\t": "a tab",
    "\n": "a line break",
    "\r": "a carriage return",
    "\u2028": "a line separator",
    "\u2029": "a paragraph separator",
}

MaxTokens = Annotated[int, Field(strict=True, ge=1, le=32768)]
Temperature = Annotated[float, Field(strict=True, ge=0.0, le=2.0, allow_inf_nan=False)]
ShortText = Annotated[str, Field(max_length=100)]
Description = Annotated[str, Field(max_length=2000)]
SystemPrompt = Annotated[str, Field(max_length=8000)]
BaseUrl = Annotated[str, Field(min_length=1, max_length=2048)]
UpstreamModel = Annotated[str, Field(min_length=1, max_length=200)]
ApiKey = Annotated[
    str,
    Field(min_length=1, max_length=4096, json_schema_extra={"pattern": API_KEY_PATTERN}),
    AfterValidator(
        must_match(
            API_KEY_PATTERN,
            "may hold only visible ASCII characters, no spaces; paste the key exactly as the "
            "endpoint's provider gave it",
        )
    ),
]
Email = Annotated[
    str,
    Field(max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN}),
    AfterValidator(
        must_match(EMAIL_PATTERN, "is not an email address; write it like name@example.org")
    ),
]
ModelName = Annotated[
    str,
    Field(json_schema_extra={"pattern": MODEL_NAME_PATTERN}),
    AfterValidator(
        must_match(
            MODEL_NAME_PATTERN,
            "must be 1 to 100 letters, digits and . _ : + - (no spaces or slashes), starting "
            "with a letter or a digit, like my-model-7b",
        )
    ),
]
Reason = Annotated[str, Field(max_length=500)]


def refuse_control_characters(text: str, *, multi_line: bool) -> None:
    """Raise ValueError naming the first control character in `text` and where it is."""
    found = (MULTI_LINE_REFUSED if multi_line else ONE_LINE_REFUSED).search(text)
    if found is None:
        return
    char = found.group()
    what = _CONTROL_NAMES.get(char, "a control character")
    allowed = (
        "only tabs and line breaks may stand between the printable characters"
        if multi_line
        else "write it on one line, with printable characters only"
    )
    raise ValueError(
        f"contains {what} (U+{ord(char):04X}) at character {found.start() + 1}; {allowed}"
    )


class StrictIn(InputSchema):
    """Every text field is refused with a control character in it (PostgreSQL cannot even store
    NUL); those listed in `multi_line_fields` may hold tabs and line breaks."""

    multi_line_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            refuse_control_characters(value, multi_line=info.field_name in cls.multi_line_fields)
        return value


class OwnerIn(StrictIn):
    name: str = Field(min_length=1, max_length=100)
    email: Email
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


class WebhookIn(StrictIn):
    url: str = Field(min_length=1, max_length=2000)


class WebhookSet(BaseModel):
    """The webhook as set, with its signing secret: shown this once, never again."""

    url: str
    secret: str


class WebhookDeliveryOut(BaseModel):
    event: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    delivered_at: datetime | None
    given_up_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None


class WebhookOut(BaseModel):
    url: str | None
    deliveries: list[WebhookDeliveryOut]


class OwnerOut(BaseModel):
    id: int
    name: str
    email: str
    created_at: datetime
    revoked_at: datetime | None = None
    models: int | None = None


class InviteIn(StrictIn):
    email: Email


class InviteOut(BaseModel):
    email: str
    code: str
    expires_at: datetime


class ModelIn(StrictIn):
    # Sent to the endpoint only, inside a JSON body: paragraphs and indented examples are usual.
    multi_line_fields: ClassVar[frozenset[str]] = frozenset({"description", "system_prompt"})

    name: ModelName
    organization: ShortText = ""
    license: ShortText = ""
    description: Description = ""
    base_url: BaseUrl
    model: UpstreamModel
    api_key: ApiKey | None = None
    max_tokens: MaxTokens = 1024
    temperature: Temperature = 0.7
    system_prompt: SystemPrompt = ""
    # The model reads images in prompts; the probe checks it with a tiny picture.
    supports_images: bool = False

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved; choose another name")
        return value


class ModelPatch(StrictIn):
    """Only the fields sent change; `api_key: null` removes the key."""

    multi_line_fields: ClassVar[frozenset[str]] = frozenset({"description", "system_prompt"})

    organization: ShortText | None = None
    license: ShortText | None = None
    description: Description | None = None
    base_url: BaseUrl | None = None
    model: UpstreamModel | None = None
    api_key: ApiKey | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    system_prompt: SystemPrompt | None = None
    supports_images: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> ModelPatch:
        for name in self.model_fields_set - {"api_key"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: null is not a value; leave the field out to keep it")
        if not self.model_fields_set:
            raise ValueError("nothing to change; send at least one field")
        return self


class OperatorActionOut(BaseModel):
    """One entry of the audit log."""

    id: int
    created_at: datetime
    actor: str
    action: str
    target: str
    reason: str


class WeightIn(StrictIn):
    weight: float = Field(ge=0, le=1000)
    reason: Reason = ""


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
    supports_images: bool
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
    # Where the answer failed: in a battle (settled ones only) or in a direct chat
    source: Literal["battle", "chat"] = "battle"


class NamedVotesOut(BaseModel):
    """Votes of side-by-side battles, whose visitor chose the models by name: never rated."""

    votes: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0


class ChatFeedbackOut(BaseModel):
    """Direct chats with the model and the thumbs their visitors gave its answers."""

    chats: int = 0
    up: int = 0
    down: int = 0


class ChatAnswersOut(BaseModel):
    """The model's answers in direct chats, counted apart from its battles' answers."""

    answers: int = 0
    failed_answers: int = 0
    # Answered, and withheld by the arena's moderation: not failures (docs/moderation.md)
    withheld_answers: int = 0
    # failed_answers / answers
    error_rate: float | None = None


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
    # Counted apart from the votes above, which are the anonymous battles' only
    named_votes: NamedVotesOut = NamedVotesOut()
    chat_feedback: ChatFeedbackOut = ChatFeedbackOut()
    chat_answers: ChatAnswersOut = ChatAnswersOut()
