"""Settings of the arena, read once from ARENA_* environment variables and an optional .env file."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Final

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
DEFAULT_VOTE_WINDOW_SECONDS: Final = 3600.0


class Settings(BaseSettings):
    """Everything the service can be told; `make run` needs none of it."""

    model_config = SettingsConfigDict(
        env_prefix="ARENA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Where things live
    data_dir: Path = Path("data")
    database_url: str = ""
    # PostgreSQL connections each worker keeps open, and how many more it may open under load
    # (opened and closed per request: keep the pool at the worker's usual concurrency);
    # workers x (pool + overflow + 3: the battle path's two and the worker's lock) must stay
    # under the server's max_connections.
    database_pool_size: int = Field(default=30, ge=1, le=1000)
    database_max_overflow: int = Field(default=10, ge=0, le=1000)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # One log line per request from uvicorn; behind a reverse proxy that logs them already, off
    # saves each worker a few percent of its CPU.
    access_log: bool = True
    # Bytes of a request body: a longer one gets a 413 while it is read, before anything parses
    # it (the longest prompt, 200,000 characters of UTF-8, fits in the default).
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=1_000_000_000)
    # A request head (request line and headers) not complete this many seconds after the
    # connection opened (after its first bytes, on a kept-alive connection) closes the connection;
    # one longer than this many bytes gets a 431.
    request_head_timeout: PositiveSeconds = 10.0
    max_request_head_bytes: int = Field(default=65_536, ge=4096, le=16_777_216)
    # Addresses of reverse proxies whose X-Forwarded-For names the real client (comma-separated,
    # "*" for any); empty trusts no header, so a client cannot pick the address it is limited by.
    trusted_proxies: str = Field(default="", max_length=4000)

    # Secrets: generated and kept in data_dir on first run when not given
    secret_key: SecretStr | None = None
    # Older keys still accepted for decrypting endpoint keys (comma-separated), newest first
    old_secret_keys: str = ""
    admin_token: SecretStr | None = None

    # Demo endpoints (`make run` starts them; their models are registered like any other)
    demo: bool = False
    demo_port: int = Field(default=8001, ge=1, le=65535)
    # Pause between the demo models' words; 0 streams each answer at once
    demo_seconds_per_word: float = Field(default=0.03, ge=0, le=5)
    allow_private_endpoints: bool = False

    # Battles
    max_prompt_chars: int = Field(default=8000, ge=1, le=200_000)
    max_turns: int = Field(default=8, ge=1, le=100)
    # Upstream timeouts (seconds) and answer cap
    connect_timeout: PositiveSeconds = 5.0
    first_token_timeout: PositiveSeconds = 30.0
    idle_timeout: PositiveSeconds = 20.0
    total_timeout: PositiveSeconds = 180.0
    max_answer_bytes: int = Field(default=65_536, ge=256, le=10_000_000)
    # How long after it started a battle takes a vote or a follow-up. Past it the battle is over
    # whatever its status, and only then do the public and owner figures count it unvoted:
    # counting it while it can still be voted on would name its pair (battles/settled.py).
    vote_window_seconds: float = Field(default=DEFAULT_VOTE_WINDOW_SECONDS, gt=0, le=30 * 86_400)
    # Session cookie lifetime
    session_days: int = Field(default=30, ge=1, le=3650)
    cookie_secure: bool = False

    # Vote integrity (DESIGN section 5). Rate limits in the `limits` notation, e.g.
    # "20/minute;200/day"; an empty string switches that limit off. The battle limits count
    # follow-up turns too: each calls both endpoints, as a new battle does.
    battle_rate_limit: str = "20/minute;300/day"
    battle_ip_rate_limit: str = "120/minute;3000/day"
    vote_rate_limit: str = "20/minute;300/day"
    vote_ip_rate_limit: str = "120/minute;3000/day"
    # Keys of the rate-limit counters in Redis (ARENA_REDIS_URL) start with this
    rate_limit_key_prefix: str = "arena"
    # Extra names by which a model or organisation may give itself away, as JSON keyed by model name
    # or organisation, e.g. {"OpenAI": ["ChatGPT", "GPT"]}; the name and organisation always count.
    identity_aliases: dict[str, list[str]] = Field(default_factory=dict)
    # A normalised prompt seen more than this many times: later battles with it are not counted.
    duplicate_prompt_limit: int = Field(default=25, ge=1)
    # Faster than this reading speed (characters of the latest answers per second): too fast.
    reading_chars_per_second: float = Field(default=100.0, gt=0)
    min_vote_seconds: float = Field(default=1.0, ge=0)
    # Long answers are skimmed: the reading time asked for never exceeds this.
    max_reading_seconds: float = Field(default=20.0, ge=0)
    # Vote-rigging scan: a session whose decisive votes for (or against) one model are this
    # improbable under the current ratings (Bonferroni over its models) is flagged.
    rigging_alpha: float = Field(default=1e-4, gt=0, lt=1)
    rigging_min_votes: int = Field(default=8, ge=1)
    rigging_scan_seconds: float = Field(default=300.0, ge=0)

    # Sampling (DESIGN section 6): models with fewer counted votes than the target are drawn
    # `new_model_boost` times as often, as FastChat's battle targets do.
    new_model_vote_target: int = Field(default=300, ge=0)
    new_model_boost: float = Field(default=4.0, ge=1)

    # Ratings
    bootstrap_rounds: int = Field(default=100, ge=0, le=10_000)
    recompute_every_votes: int = Field(default=50, ge=1)
    recompute_every_seconds: float = Field(default=300.0, gt=0)
    anchor: str = ""

    # Open data
    release_conversations: bool = False

    # Owners
    open_signup: bool = True
    auto_approve: bool = False
    invite_days: int = Field(default=14, ge=1, le=3650)
    signups_per_hour: int = Field(default=20, ge=1, le=100_000)
    # Wrong owner or admin tokens per client address and minute before answering 429
    auth_failures_per_minute: int = Field(default=10, ge=1, le=100_000)
    # Registration probe and health: a short real request with its own deadline
    probe_timeout: PositiveSeconds = 15.0
    # Consecutive failed answers before a model is paused automatically (0: never)
    circuit_breaker_failures: int = Field(default=5, ge=0, le=10_000)
    # How often automatically paused models are probed to resume them (0: never)
    health_probe_seconds: float = Field(default=60.0, ge=0, le=86_400)

    # Scale-out
    redis_url: str = ""

    @model_validator(mode="after")
    def _fill_database_url(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'arena.db'}"
        return self

    def resolved_secret_key(self) -> str:
        """The Fernet key for endpoint keys and session signing, created on first run if absent."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        key_file = self.data_dir / "secret.key"
        if key_file.exists():
            return key_file.read_text().strip()
        from cryptography.fernet import Fernet

        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key().decode()
        # Exclusive create: two workers starting together must agree on one key.
        try:
            with open(key_file, "x") as fh:
                fh.write(key)
            key_file.chmod(0o600)
        except FileExistsError:
            return key_file.read_text().strip()
        return key

    def resolved_admin_token(self) -> str | None:
        return self.admin_token.get_secret_value() if self.admin_token else None


def new_token() -> str:
    return secrets.token_urlsafe(32)
