"""The settings reference in Markdown, generated from the Settings class so it cannot drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from arena.config import Settings

# Every setting sits in exactly one group (a test checks): the order of the reference.
GROUPS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    (
        "Where things live",
        (
            "data_dir",
            "database_url",
            "database_pool_size",
            "database_max_overflow",
            "host",
            "port",
            "workers",
            "redis_url",
            "access_log",
            "trusted_proxies",
            "max_body_bytes",
            "request_head_timeout",
            "max_request_head_bytes",
        ),
    ),
    (
        "Secrets and sessions",
        ("secret_key", "old_secret_keys", "admin_token", "cookie_secure", "session_days"),
    ),
    ("Demo", ("demo", "demo_port", "demo_seconds_per_word", "allow_private_endpoints")),
    (
        "Battles and upstream calls",
        (
            "max_prompt_chars",
            "max_images_per_prompt",
            "max_image_bytes",
            "max_image_pixels",
            "max_turns",
            "vote_window_seconds",
            "connect_timeout",
            "first_token_timeout",
            "idle_timeout",
            "total_timeout",
            "max_answer_bytes",
            "ca_bundle",
            "proxy_resolves_names",
        ),
    ),
    (
        "Vote integrity",
        (
            "battle_rate_limit",
            "battle_ip_rate_limit",
            "vote_rate_limit",
            "vote_ip_rate_limit",
            "rate_limit_key_prefix",
            "identity_aliases",
            "duplicate_prompt_limit",
            "reading_chars_per_second",
            "min_vote_seconds",
            "max_reading_seconds",
            "rigging_alpha",
            "rigging_min_votes",
            "rigging_pool_addresses",
            "rigging_alike_min_votes",
            "rigging_scan_seconds",
        ),
    ),
    ("Sampling", ("new_model_vote_target", "new_model_boost", "sampling_mode", "sampling_floor")),
    (
        "Ratings",
        (
            "bootstrap_rounds",
            "style_bootstrap_rounds",
            "recompute_every_votes",
            "recompute_processes",
            "recompute_every_seconds",
            "anchor",
            "short_prompt_tokens",
        ),
    ),
    (
        "Open data",
        ("release_conversations", "release_notice", "release_notice_file", "data_license"),
    ),
    (
        "Moderation",
        (
            "moderation_url",
            "moderation_api_key",
            "moderation_model",
            "moderation_timeout",
            "moderation_when_down",
            "moderation_blocklist_file",
        ),
    ),
    (
        "Judged categories",
        (
            "judge_base_url",
            "judge_model",
            "judge_api_key",
            "judge_requests_per_minute",
            "judge_queue_size",
            "judge_timeout",
            "judge_retry_seconds",
        ),
    ),
    ("Metrics and logs", ("metrics", "metrics_token", "log_format")),
    (
        "Model owners",
        (
            "open_signup",
            "auto_approve",
            "invite_days",
            "signups_per_hour",
            "auth_failures_per_minute",
            "probe_timeout",
            "webhook_retry_seconds",
            "circuit_breaker_failures",
            "health_probe_seconds",
        ),
    ),
)


def variable(name: str) -> str:
    return f"ARENA_{name.upper()}"


def shown_default(name: str) -> str:
    """The default as a person would write it in the environment."""
    value = Settings.model_fields[name].get_default(call_default_factory=True)
    if value is None or isinstance(value, SecretStr):
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    if isinstance(value, Path):
        value = value.as_posix()
    return f"`{value}`" if str(value) else "empty"


def one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_markdown() -> str:
    """One table per group: variable, default, what it does."""
    parts = []
    for title, names in GROUPS:
        rows = [f"## {title}", "", "| variable | default | what it does |", "| --- | --- | --- |"]
        for name in names:
            description = Settings.model_fields[name].description or ""
            rows.append(f"| `{variable(name)}` | {shown_default(name)} | {one_line(description)} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"
