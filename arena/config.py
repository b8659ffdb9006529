"""Settings of the arena, read once from ARENA_* environment variables and an optional .env file."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["text", "json"]
PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
DEFAULT_VOTE_WINDOW_SECONDS: Final = 3600.0


class Settings(BaseSettings):
    """Everything the service can be told; `make run` needs none of it."""

    model_config = SettingsConfigDict(
        env_prefix="ARENA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # The docstring under each field is its description: the settings reference
        # (docs/settings.md, settings_reference.py) is generated from it.
        use_attribute_docstrings=True,
    )

    # Where things live
    data_dir: Path = Path("data")
    """Folder of the SQLite file and of the generated secret key."""
    database_url: str = ""
    """`sqlite:///PATH` or `postgresql://USER@HOST:PORT/DB` (psycopg 3); empty means the SQLite
    file `arena.db` in `ARENA_DATA_DIR`."""
    database_pool_size: int = Field(default=30, ge=1, le=1000)
    """PostgreSQL connections each worker keeps open. Each worker also keeps two for the battles'
    short transactions and one for its lock: keep workers × (pool + overflow + 3) under the
    server's `max_connections` (SQLite keeps a small pool: one writer at a time)."""
    database_max_overflow: int = Field(default=10, ge=0, le=1000)
    """PostgreSQL connections a worker opens (and closes again) beyond the pool under load."""
    host: str = "127.0.0.1"
    """Address `arena serve` listens on."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port `arena serve` listens on."""
    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes of `arena serve` (set `ARENA_REDIS_URL` for shared rate limits when above
    1)."""
    access_log: bool = True
    """One log line per request, written by a thread of its own; `false` when a reverse proxy
    logs them already (it saves each worker a few percent of its CPU)."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=1_000_000_000)
    """Largest request body: a longer one is answered 413 (naming the limit) while it is read, on
    every route including the battle's fast lane, and the connection is closed. The longest
    prompt, 200,000 characters of UTF-8, fits in the default."""
    request_head_timeout: PositiveSeconds = 10.0
    """Seconds a request head (request line and headers) may take, from the connection opening
    or, on a kept-alive connection, from the head's first bytes; then the connection is closed."""
    max_request_head_bytes: int = Field(default=65_536, ge=4096, le=16_777_216)
    """Largest request head; a longer one is answered 431 and the connection is closed."""
    trusted_proxies: str = Field(default="", max_length=4000)
    """Addresses of reverse proxies (comma-separated, `*` for any) whose `X-Forwarded-For` gives
    the client's address for rate limits; empty trusts no header, so a client cannot pick the
    address it is limited by."""

    # Secrets
    secret_key: SecretStr | None = None
    """Fernet key that encrypts endpoint API keys, signs session cookies and salts the visitor
    hashes; unset, one is generated into `ARENA_DATA_DIR/secret.key` on first run."""
    old_secret_keys: str = ""
    """Earlier keys, comma-separated, newest first, still accepted for decryption during a
    rotation."""
    admin_token: SecretStr | None = None
    """Bearer token of the operator's `/api/admin/...` routes; unset, the admin API is off."""
    cookie_secure: bool = False
    """Mark the session cookie `Secure` (set it behind HTTPS)."""
    session_days: int = Field(default=30, ge=1, le=3650)
    """Lifetime of a visitor's session cookie, in days."""

    # Demo endpoints (`make run` starts them; their models are registered like any other)
    demo: bool = False
    """Start the built-in demo endpoints and register their models (`arena serve --demo` sets
    it)."""
    demo_port: int = Field(default=8001, ge=1, le=65535)
    """Port of the demo endpoints."""
    demo_seconds_per_word: float = Field(default=0.03, ge=0, le=5)
    """Pause between the demo models' words; `0` answers at once."""
    allow_private_endpoints: bool = False
    """Allow endpoints on loopback and private networks (the demo and a local Ollama need it);
    cloud metadata addresses stay refused."""

    # Battles and upstream calls
    max_prompt_chars: int = Field(default=8000, ge=1, le=200_000)
    """Longest prompt accepted, in characters."""
    max_images_per_prompt: int = Field(default=4, ge=0, le=16)
    """Images a visitor may attach to a battle's first prompt (0: none; battles stay text only).
    Only models registered with image support meet in a battle with images."""
    max_image_bytes: int = Field(default=5_000_000, ge=1024, le=50_000_000)
    """Largest attached image, in bytes of the file as sent. The body limit of `POST
    /api/battles` is `ARENA_MAX_BODY_BYTES` plus room for this many bytes per image in base64."""
    max_image_pixels: int = Field(default=25_000_000, ge=1024, le=200_000_000)
    """Largest attached image in pixels (width times height), checked from its header before it
    is decoded: a small file that would decode to a huge picture (a decompression bomb) is
    refused."""
    max_turns: int = Field(default=8, ge=1, le=100)
    """Turns per battle or direct chat (the first prompt, its follow-ups and each time the
    latest turn's answers were asked again)."""
    vote_window_seconds: float = Field(default=DEFAULT_VOTE_WINDOW_SECONDS, gt=0, le=30 * 86_400)
    """A battle takes its vote and follow-ups this long after it starts; past it, it is over and
    counts in the public and owner figures. Counting it while it can still be voted on would name
    its pair (battles/settled.py)."""
    connect_timeout: PositiveSeconds = 5.0
    """Seconds to connect to an endpoint."""
    first_token_timeout: PositiveSeconds = 30.0
    """Seconds from the request to the first token."""
    idle_timeout: PositiveSeconds = 20.0
    """Longest pause between two tokens, in seconds."""
    total_timeout: PositiveSeconds = 180.0
    """Longest whole answer, in seconds."""
    max_answer_bytes: int = Field(default=65_536, ge=256, le=10_000_000)
    """An answer longer than this ends its side with an error."""
    ca_bundle: Path | None = None
    """PEM file of the certificate authorities trusted on https:// endpoints, in place of
    certifi's public ones (behind a TLS-inspecting proxy, its CA); unset: `SSL_CERT_FILE`, else
    `SSL_CERT_DIR`, else certifi. A missing or unreadable file stops the arena at start.
    Proxies come from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`."""
    proxy_resolves_names: bool = False
    """Ask the proxy for an endpoint's host name instead of the address the SSRF guard checked,
    for proxies that allow destinations by domain name; the proxy then resolves the name
    itself, so the guard's pin rests on the proxy's own rules."""

    # Vote integrity (DESIGN section 5)
    battle_rate_limit: str = "20/minute;300/day"
    """New battles, follow-up turns and regenerations per session (`limits` notation, e.g.
    `20/minute;200/day`; empty switches the limit off). Follow-ups and regenerations count: each
    calls both endpoints, as a new battle does."""
    battle_ip_rate_limit: str = "120/minute;3000/day"
    """New battles, follow-up turns and regenerations per client address."""
    vote_rate_limit: str = "20/minute;300/day"
    """Votes per session."""
    vote_ip_rate_limit: str = "120/minute;3000/day"
    """Votes per client address."""
    rate_limit_key_prefix: str = "arena"
    """Prefix of the rate-limit counters' keys in Redis."""
    identity_aliases: dict[str, list[str]] = Field(default_factory=dict)
    """JSON: more names by which a model or organisation gives itself away, keyed by model name
    or organisation, e.g. `{"OpenAI": ["ChatGPT"]}`; the name and organisation always count."""
    duplicate_prompt_limit: int = Field(default=25, ge=1)
    """A normalised prompt seen more often than this: later votes on it are not counted (the
    leaderboard's tables without deduplication rate them)."""
    reading_chars_per_second: float = Field(default=100.0, gt=0)
    """Votes faster than this reading speed (characters of the latest answers per second) are
    flagged."""
    min_vote_seconds: float = Field(default=1.0, ge=0)
    """The shortest reading time asked for, in seconds."""
    max_reading_seconds: float = Field(default=20.0, ge=0)
    """The longest reading time asked for: long answers are skimmed."""
    rigging_alpha: float = Field(default=1e-4, gt=0, lt=1)
    """Significance at which the rigging scan flags a session: its decisive votes for (or
    against) one model are this improbable under the current ratings (Bonferroni over its
    models)."""
    rigging_min_votes: int = Field(default=8, ge=1)
    """Decisive votes a session needs before the rigging scan judges it."""
    rigging_pool_addresses: bool = True
    """The rigging scan also judges together the sessions of each address hash, for attackers
    who spread their votes too thin to judge one session at a time (battles/pooled_rigging.py)."""
    rigging_alike_min_votes: int = Field(default=3, ge=0)
    """The rigging scan also judges together every session with at least this many decisive
    votes on a model, wherever it comes from (`0`: off)."""
    rigging_scan_seconds: float = Field(default=300.0, ge=0)
    """How often the rigging scan runs (`0`: never)."""

    # Sampling (DESIGN section 6)
    new_model_vote_target: int = Field(default=300, ge=0)
    """Counted votes below which a model is boosted (FastChat's battle targets serve the same
    end)."""
    new_model_boost: float = Field(default=4.0, ge=1)
    """How many times as often a boosted model is drawn."""
    sampling_mode: Literal["weighted", "active"] = "weighted"
    """`weighted`: pairs drawn by the product of the models' weights; `active`: leaned towards
    the pairs whose vote would narrow the widest rating intervals most."""
    sampling_floor: float = Field(default=0.2, ge=0, le=1)
    """In active mode, the fraction of the draws spread evenly over every pair of drawable
    models: no pair's planned share falls below floor / pairs."""

    # Ratings
    bootstrap_rounds: int = Field(default=100, ge=0, le=10_000)
    """Bootstrap rounds of the `bt-bootstrap` tables (`0`: none)."""
    style_bootstrap_rounds: int = Field(default=0, ge=0, le=10_000)
    """Bootstrap rounds of the `bt-style-bootstrap` tables, one for each category (no
    exclusions), beside the sandwich intervals of `bt-style` (`0`: none). They cost most of a
    recompute: 100 rounds take about 15 s per million votes of a category."""
    recompute_processes: int = Field(default=2, ge=1, le=64)
    """Processes the recompute spreads its tables over (its own included): a million votes on
    two cores took 11.4 s on two, 13.7 s on one. The extra ones are forked on Linux only; `1`
    keeps the recompute on one core."""
    recompute_every_votes: int = Field(default=50, ge=1)
    """Recompute the leaderboard after this many new counted votes."""
    recompute_every_seconds: float = Field(default=300.0, gt=0)
    """Or after this long, in seconds, if anything changed."""
    anchor: str = ""
    """`MODEL=RATING`: shift every table that holds MODEL so it sits at RATING."""
    short_prompt_tokens: int = Field(default=5, ge=1, le=100_000)
    """The "exclude short prompts" view leaves out battles whose first prompt has fewer than
    this many tokens (estimated: one per CJK character, one per four other characters)."""

    # Open data
    release_conversations: bool = False
    """Put prompts and answers in `/battles.*` and publish `/preferences.jsonl`, only from
    battles whose visitor was shown the release notice and did not delete them
    (docs/release.md)."""
    release_notice: str = Field(default="", max_length=20_000)
    """What the battle page tells visitors before their first prompt while conversations are
    released (paragraphs split by a blank line); empty, a short default notice."""
    release_notice_file: Path | None = None
    """A UTF-8 file holding the notice; wins over `ARENA_RELEASE_NOTICE`. The arena refuses to
    start if it is missing, empty or over 20,000 characters."""
    data_license: str = Field(
        default="CC-BY-4.0", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9.+-]*$"
    )
    """The licence the exports are published under, an SPDX identifier (or `other`); the
    dataset cards name it, and say whether the operator chose it or it is this default."""

    # Model owners
    open_signup: bool = True
    """Anyone may create an owner account; `false` requires an invite code."""
    auto_approve: bool = False
    """New endpoints compete at once instead of waiting for an operator."""
    invite_days: int = Field(default=14, ge=1, le=3650)
    """How long an invite code stays valid, in days."""
    signups_per_hour: int = Field(default=20, ge=1, le=100_000)
    """Owner sign-ups per client address and hour."""
    auth_failures_per_minute: int = Field(default=10, ge=1, le=100_000)
    """Wrong owner or admin tokens per client address and minute before answering 429."""
    probe_timeout: PositiveSeconds = 15.0
    """Deadline of the registration and health probes, in seconds."""
    webhook_retry_seconds: float = Field(default=30.0, gt=0, le=86_400)
    """Wait before the first retry of a webhook delivery that failed; each later retry waits
    twice as long (at most six hours), eight attempts in all."""
    circuit_breaker_failures: int = Field(default=5, ge=0, le=10_000)
    """Consecutive failed answers before a model is paused automatically (`0`: never)."""
    health_probe_seconds: float = Field(default=60.0, ge=0, le=86_400)
    """How often automatically paused models are probed to resume them (`0`: never)."""

    # Moderation (arena/moderation.py, docs/moderation.md)
    moderation_url: str = Field(default="", max_length=2048)
    """Full URL of an OpenAI-compatible moderation endpoint, e.g.
    `https://api.openai.com/v1/moderations`; every prompt (with its images) is checked before a
    model sees it, and every turn's answers once they are in. Empty: no endpoint. It passes the
    same address checks as model endpoints (`ARENA_ALLOW_PRIVATE_ENDPOINTS` for a local one)."""
    moderation_api_key: SecretStr | None = None
    """Bearer key sent to the moderation endpoint."""
    moderation_model: str = Field(default="omni-moderation-latest", max_length=200)
    """The `model` asked of the moderation endpoint; empty sends none (the server's default)."""
    moderation_timeout: PositiveSeconds = 5.0
    """Seconds one moderation request may take, connection included; past it the endpoint counts
    as down."""
    moderation_when_down: Literal["stop", "continue"] = "stop"
    """When the moderation endpoint is down (unreachable, too slow, an error status, an answer
    that does not parse): `stop` refuses new prompts and withholds answers, `continue` lets
    battles and direct chats go on unmoderated (logged and counted)."""
    moderation_blocklist_file: Path | None = None
    """A UTF-8 file of blocked words and phrases, one a line, and `re:` regular expressions
    (docs/moderation.md); re-read within seconds when it changes. The arena refuses to start if
    it is unreadable, over 1 MiB or holds an invalid pattern."""
    # The judge (LLM-judged categories)
    judge_base_url: str = ""
    """Base URL of an OpenAI-compatible endpoint that labels battles for the judged categories
    (Hard Prompts, Math, Instruction Following, Creative Writing); empty: no judge, unless one
    was set with `arena judge set`, which takes precedence. The judge is sent the first prompt
    and both answers of every voted battle."""
    judge_model: str = ""
    """Model id sent to the judge endpoint (with `ARENA_JUDGE_BASE_URL`)."""
    judge_api_key: SecretStr | None = None
    """API key of the judge endpoint (with `ARENA_JUDGE_BASE_URL`)."""
    judge_requests_per_minute: float = Field(default=30.0, gt=0, le=60_000)
    """Most requests sent to the judge per minute, across all workers and hosts."""
    judge_queue_size: int = Field(default=200, ge=1, le=100_000)
    """Most battles waiting for a label at once; newer voted battles wait for room."""
    judge_timeout: PositiveSeconds = 60.0
    """Seconds a judge's answer may take in all; then the label is retried later."""
    judge_retry_seconds: float = Field(default=60.0, gt=0, le=86_400)
    """Wait before the first retry of a battle the judge could not label; each later retry
    waits twice as long (at most six hours), eight attempts in all (`arena judge relabel`
    tries again)."""

    # Metrics and logs
    metrics: bool = False
    """Serve Prometheus metrics at `/metrics` (`on` / `off`)."""
    metrics_token: SecretStr | None = None
    """Bearer token `/metrics` asks for. Unset, `/metrics` is as public as the arena, and then
    the series that name a model or an upstream failure's kind are not recorded: read before
    and after a battle, they would name its pair."""

    log_format: LogFormat = "text"
    """`text`: uvicorn's log lines; `json`: one JSON object a line (time, level, logger, message,
    and for requests their id, also sent as the `X-Request-ID` response header, and the access
    log's client, method, path and status)."""

    # Scale-out
    redis_url: str = ""
    """Redis for rate-limit counters shared by workers and hosts; empty keeps them in memory."""

    @model_validator(mode="after")
    def _fill_database_url(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'arena.db'}"
        return self

    @field_validator("release_notice_file")
    @classmethod
    def _notice_file_readable(cls, path: Path | None) -> Path | None:
        # Named at start-up (and by every CLI command), not on the first visitor's page.
        if path is not None:
            from arena.consent import read_notice_file

            read_notice_file(path)
        return path

    @field_validator("moderation_blocklist_file")
    @classmethod
    def _blocklist_usable(cls, path: Path | None) -> Path | None:
        # A blocklist that cannot be used stops the arena at start, naming the file and line.
        if path is not None:
            from arena.moderation import read_blocklist

            read_blocklist(path)
        return path

    @field_validator("moderation_url")
    @classmethod
    def _moderation_url_form(cls, url: str) -> str:
        if url:
            from arena.errors import InvalidInput
            from arena.registry.address_guard import parse_endpoint_url

            try:
                parse_endpoint_url(url)
            except InvalidInput as exc:
                raise ValueError(
                    exc.message.replace("base_url:", "ARENA_MODERATION_URL:")
                ) from None
        return url

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
