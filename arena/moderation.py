"""Moderation: prompts refused before any model sees them and a turn's answers withheld once
they are in, by the operator's blocklist file and an OpenAI-compatible moderation endpoint;
every refusal counted by reason (docs/moderation.md).

The battle path makes two calls: `Moderator.check_prompt` before a pair is drawn (or a follow-up
stored), which raises `PromptRefused` or `ModerationUnavailable` after counting the refusal, and
`Moderator.check_answers` once both answers are in, whose verdict the turn is settled with
(`turns.finish_turn`). A direct chat makes the same two calls, on its prompts and on each answer
(`chats.service.finish_turn`). Nothing is checked, and nothing costs anything, when neither a
blocklist nor an endpoint is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import regex
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from arena import metrics
from arena.battles.lookalikes import fold_lookalikes
from arena.config import Settings
from arena.errors import (
    EndpointRefused,
    EndpointUnresolvable,
    InvalidInput,
    ModerationUnavailable,
    PromptRefused,
)
from arena.models import ModerationRefusal
from arena.registry.address_guard import Resolver, check_url, parse_endpoint_url, system_resolve
from arena.upstream.http import Target, UpstreamClient, UpstreamHTTPError, drop_history

log = logging.getLogger(__name__)

Stage = Literal["prompt", "answer"]

# The battle flag of a battle whose answers were withheld: it takes no vote and its texts are
# never released (leaderboard/release.py).
MODERATED: Final = "moderated"

# Reasons a refusal is counted by (besides "flagged:<category>").
BLOCKLIST: Final = "blocklist"
# A blocklist pattern ran out of time on the text: refused, whatever ARENA_MODERATION_WHEN_DOWN
# says, or a text made to be slow to match would slip past every pattern.
BLOCKLIST_TIMEOUT: Final = "blocklist_timeout"
UNAVAILABLE: Final = "unavailable"
# OpenAI's categories (omni-moderation); any other a server names is counted as "other", so
# that a server cannot grow the operator's metrics without bound.
CATEGORIES: Final = frozenset(
    {
        "harassment",
        "harassment/threatening",
        "hate",
        "hate/threatening",
        "illicit",
        "illicit/violent",
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "sexual/minors",
        "violence",
        "violence/graphic",
    }
)
OTHER_CATEGORY: Final = "other"

# Bounds on what the operator's file and the endpoint's answer may hold.
MAX_BLOCKLIST_BYTES: Final = 1_048_576
MAX_ENTRY_CHARS: Final = 1000
# CPU seconds all of a blocklist's patterns together may take on one text: the `regex` module
# stops a match past its timeout (counted in the process's CPU time, so on a loaded machine it
# takes longer by the clock), so a pattern that backtracks catastrophically cannot hang a worker.
PATTERN_SECONDS: Final = 0.25
# How often a worker looks at the blocklist file's size and modification time.
RELOAD_CHECK_SECONDS: Final = 2.0
MAX_RESPONSE_BYTES: Final = 262_144
# How long a checked address of the endpoint is reused (as for model endpoints).
RECHECK_SECONDS: Final = 5.0

WITHHELD_MESSAGE: Final = (
    "These answers were withheld by the arena's moderation, so this battle cannot be voted on. "
    "Please start a new battle."
)
_PATTERN_PREFIX: Final = "re:"
_WORD = re.compile(r"\w+")


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """What moderation made of a text: `reason` None when it passed; `detail` for the log."""

    reason: str | None = None
    detail: str = ""

    @property
    def refused(self) -> bool:
        return self.reason is not None


PASSED: Final = Verdict()


def flagged_reason(category: str) -> str:
    return f"flagged:{category if category in CATEGORIES else OTHER_CATEGORY}"


def prompt_refusal(verdict: Verdict) -> PromptRefused | ModerationUnavailable:
    """The error the visitor reads for a refused prompt: it says why, never what matched."""
    reason = verdict.reason or ""
    if reason == UNAVAILABLE:
        return ModerationUnavailable(
            "The arena's moderation service is not answering, so no prompt can be sent now. "
            "Please try again in a few minutes."
        )
    if reason == BLOCKLIST:
        why = "it contains a word or phrase this arena does not accept"
    elif reason == BLOCKLIST_TIMEOUT:
        why = "the arena could not check it against its blocklist in time"
    else:
        category = reason.removeprefix("flagged:").replace("/", ", ")
        why = f"the arena's moderation flagged it ({category})"
    return PromptRefused(
        f"prompt: {why}. No model has seen it; rephrase it and send again, or start over."
    )


# ---------------------------------------------------------------- the blocklist


class BlocklistError(ValueError):
    pass


@dataclass(frozen=True)
class BlocklistEntries:
    """A blocklist as parsed: phrases as tuples of folded words, and compiled patterns."""

    phrases: frozenset[tuple[str, ...]]
    patterns: tuple[tuple[str, regex.Pattern[str]], ...]

    @property
    def longest(self) -> int:
        return max((len(phrase) for phrase in self.phrases), default=0)


def _words(text: str) -> list[str]:
    return _WORD.findall(fold_lookalikes(text))


def parse_blocklist(text: str, *, source: str = "blocklist") -> BlocklistEntries:
    """One entry a line: a word or phrase, matched as whole words after folding (NFKC, invisible
    characters dropped, look-alike letters made Latin, case folded, arena/battles/lookalikes.py),
    or `re:PATTERN`, a regular expression searched case-insensitively in the folded text. Blank
    lines and lines starting with `#` are skipped."""
    phrases: set[tuple[str, ...]] = set()
    patterns: list[tuple[str, regex.Pattern[str]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}"
        if len(line) > MAX_ENTRY_CHARS:
            raise BlocklistError(f"{where}: longer than {MAX_ENTRY_CHARS} characters")
        if line.startswith(_PATTERN_PREFIX):
            pattern = line[len(_PATTERN_PREFIX) :].strip()
            if not pattern:
                raise BlocklistError(f"{where}: 're:' with no pattern after it")
            try:
                compiled = regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
            except regex.error as exc:
                raise BlocklistError(
                    f"{where}: {pattern!r} is not a valid pattern ({exc})"
                ) from None
            patterns.append((pattern, compiled))
            continue
        words = tuple(_words(line))
        if not words:
            raise BlocklistError(
                f"{where}: {line!r} has no letters or digits to match as words; "
                "write it as a pattern, re:..."
            )
        phrases.add(words)
    return BlocklistEntries(frozenset(phrases), tuple(patterns))


def read_blocklist(path: Path) -> BlocklistEntries:
    """The file's entries; BlocklistError naming the file if it cannot be used."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BLOCKLIST_BYTES + 1)
    except OSError as exc:
        raise BlocklistError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_BLOCKLIST_BYTES:
        raise BlocklistError(f"{path}: larger than {MAX_BLOCKLIST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BlocklistError(f"{path}: not UTF-8 ({exc})") from None
    return parse_blocklist(text, source=str(path))


def match_blocklist(entries: BlocklistEntries, text: str) -> Verdict:
    """Whether `text` holds a phrase or matches a pattern of `entries`; linear in the text for
    the phrases, bounded by PATTERN_SECONDS for the patterns."""
    if entries.phrases:
        words = _words(text)
        longest = entries.longest
        for start in range(len(words)):
            for end in range(start + 1, min(start + longest, len(words)) + 1):
                if tuple(words[start:end]) in entries.phrases:
                    return Verdict(BLOCKLIST, f"phrase {' '.join(words[start:end])!r}")
    if entries.patterns:
        folded = fold_lookalikes(text)
        deadline = time.process_time() + PATTERN_SECONDS
        for source, pattern in entries.patterns:
            left = deadline - time.process_time()
            try:
                if left <= 0:
                    raise TimeoutError
                # concurrent: the GIL is released while it runs (the check runs in a thread)
                if pattern.search(folded, timeout=left, concurrent=True) is not None:
                    return Verdict(BLOCKLIST, f"pattern {source!r}")
            except TimeoutError:
                return Verdict(
                    BLOCKLIST_TIMEOUT,
                    f"the patterns took over {PATTERN_SECONDS}s (last tried: {source!r})",
                )
    return PASSED


class Blocklist:
    """The operator's blocklist file, read again when its size or modification time changes
    (looked at every RELOAD_CHECK_SECONDS at most). A file that became unusable keeps the
    entries read before, and says why in the log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self.entries = read_blocklist(path)
        self._looked_at = time.monotonic()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def current(self) -> BlocklistEntries:
        now = time.monotonic()
        if now - self._looked_at >= RELOAD_CHECK_SECONDS:
            self._looked_at = now
            self.reload_if_changed()
        return self.entries

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed; whether new entries are in use."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.entries = read_blocklist(self.path)
        except BlocklistError as exc:
            log.error("moderation blocklist not reloaded, the previous one stays: %s", exc)
            return False
        log.info(
            "moderation blocklist reloaded: %d phrases, %d patterns",
            len(self.entries.phrases),
            len(self.entries.patterns),
        )
        return True

    def check(self, text: str) -> Verdict:
        return match_blocklist(self.current(), text)


# ---------------------------------------------------------------- the endpoint


class EndpointDown(Exception):
    """The moderation endpoint gave no usable verdict; the message is for the operator's log."""


ModerationInput = str | list[Any]


def moderation_input(text: str, images: Sequence[str] = ()) -> ModerationInput:
    """The `input` of a moderation request: the text alone, or OpenAI's multi-modal list with
    each image as a URL (a `data:image/...;base64,` URL for an uploaded one)."""
    if not images:
        return text
    parts: list[Any] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return parts


def _reason_of(result: Any) -> str | None:
    """The refusal reason of one entry of the answer's `results`, None if not flagged."""
    if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
        raise EndpointDown("a result without a boolean 'flagged'")
    if not result["flagged"]:
        return None
    categories = result.get("categories")
    scores = result.get("category_scores")
    flagged = (
        [name for name, on in categories.items() if on is True and isinstance(name, str)]
        if isinstance(categories, dict)
        else []
    )
    if not flagged:
        return flagged_reason(OTHER_CATEGORY)

    def score(name: str) -> float:
        value = scores.get(name) if isinstance(scores, dict) else None
        return float(value) if isinstance(value, int | float) else 0.0

    # The category the endpoint is surest of; ties by name, so the count is reproducible.
    return flagged_reason(min(flagged, key=lambda name: (-score(name), name)))


def parse_moderation_answer(body: bytes, count: int) -> list[str | None]:
    """Each input's refusal reason (None: not flagged) from the endpoint's JSON answer."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EndpointDown(f"the answer is not JSON ({exc})") from None
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise EndpointDown("the answer has no 'results' list")
    if len(results) != count:
        raise EndpointDown(f"{len(results)} results for {count} inputs")
    return [_reason_of(result) for result in results]


class ModerationEndpoint:
    """Calls an OpenAI-compatible `/v1/moderations` through the shared upstream client, at an
    address the SSRF guard checked, within `timeout` seconds for the whole exchange."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None,
        model: str,
        timeout: float,
        allow_private: bool,
        resolve: Resolver = system_resolve,
    ) -> None:
        parsed = parse_endpoint_url(url)
        self.url = url
        self._scheme = parsed.scheme
        self._host = parsed.host.lower()
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._path = parsed.raw_path.decode("ascii")
        self._api_key = api_key
        self._model = model
        self._timeout = timeout
        self._allow_private = allow_private
        self._resolve = resolve
        self._checked: tuple[float, str] | None = None  # (valid until, address)

    async def _target(self) -> Target:
        now = time.monotonic()
        if self._checked is None or self._checked[0] <= now:
            checked = await check_url(
                self.url, allow_private=self._allow_private, resolve=self._resolve
            )
            self._checked = (now + RECHECK_SECONDS, checked.connect_ip)
        # Connect to the checked address, while TLS and Host still name the host.
        return Target(self._scheme, self._host, self._port, self._checked[1], self._path)

    async def moderate(
        self, client: UpstreamClient, inputs: list[ModerationInput]
    ) -> list[str | None]:
        """Each input's refusal reason (None: not flagged); EndpointDown when there is no
        usable answer."""
        body: dict[str, Any] = {"input": inputs[0] if len(inputs) == 1 else inputs}
        if self._model:
            body["model"] = self._model
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
            "User-Agent": "arena",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            async with asyncio.timeout(self._timeout):
                target = await self._target()
                post = client.post(target, headers, json.dumps(body).encode("utf-8"))
                response = await post.response(connect_timeout=self._timeout)
                try:
                    raw, more = await response.read(MAX_RESPONSE_BYTES)
                finally:
                    response.close()
        except TimeoutError:
            raise EndpointDown(f"no answer within {self._timeout}s") from None
        except (InvalidInput, EndpointRefused, EndpointUnresolvable) as exc:
            self._checked = None
            raise EndpointDown(f"refused by the address guard: {exc.message}") from None
        except UpstreamHTTPError as exc:
            drop_history(exc)
            raise EndpointDown(f"HTTP exchange failed: {exc}") from None
        if response.status != 200:
            text = raw[:500].decode("utf-8", "replace")
            if self._api_key:
                text = text.replace(self._api_key, "[the moderation API key]")
            raise EndpointDown(f"HTTP {response.status}: {text}")
        if more:
            raise EndpointDown(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        return parse_moderation_answer(raw, len(inputs))


# ---------------------------------------------------------------- the moderator

RecordRefusal = Callable[[Stage, str], Awaitable[None]]


class Moderator:
    """The checks the operator configured, run on prompts and answers."""

    def __init__(
        self,
        *,
        client: UpstreamClient,
        blocklist: Blocklist | None = None,
        endpoint: ModerationEndpoint | None = None,
        when_down: Literal["stop", "continue"] = "stop",
        record: RecordRefusal | None = None,
    ) -> None:
        self._client = client
        self.blocklist = blocklist
        self.endpoint = endpoint
        self.when_down = when_down
        self._record = record

    @classmethod
    def from_settings(
        cls, settings: Settings, client: UpstreamClient, record: RecordRefusal | None = None
    ) -> Moderator:
        path = settings.moderation_blocklist_file
        endpoint = None
        if settings.moderation_url:
            key = settings.moderation_api_key
            endpoint = ModerationEndpoint(
                settings.moderation_url,
                api_key=key.get_secret_value() if key is not None else None,
                model=settings.moderation_model,
                timeout=settings.moderation_timeout,
                allow_private=settings.allow_private_endpoints,
            )
        return cls(
            client=client,
            blocklist=Blocklist(path) if path is not None else None,
            endpoint=endpoint,
            when_down=settings.moderation_when_down,
            record=record,
        )

    @property
    def active(self) -> bool:
        return self.blocklist is not None or self.endpoint is not None

    async def _blocklisted(self, texts: Sequence[str]) -> Verdict:
        blocklist = self.blocklist
        if blocklist is None:
            return PASSED
        for text in texts:
            # In a thread: the patterns may take up to PATTERN_SECONDS of CPU.
            verdict = await asyncio.to_thread(blocklist.check, text)
            if verdict.refused:
                return verdict
        return PASSED

    async def _endpoint_verdict(self, stage: Stage, inputs: list[ModerationInput]) -> Verdict:
        if self.endpoint is None:
            return PASSED
        try:
            reasons = await self.endpoint.moderate(self._client, inputs)
        except Exception as exc:
            if not isinstance(exc, EndpointDown):
                # Ours, not the endpoint's: still a missing verdict, never a turn left unsettled.
                log.exception("moderation request failed unexpectedly")
            metrics.moderation_unavailable(stage)
            if self.when_down == "continue":
                log.warning("moderation endpoint down, %s goes on unmoderated: %s", stage, exc)
                return PASSED
            log.error("moderation endpoint down, %s refused: %s", stage, exc)
            return Verdict(UNAVAILABLE, str(exc))
        for reason in reasons:
            if reason is not None:
                return Verdict(reason, "flagged by the moderation endpoint")
        return PASSED

    async def verdict_on_prompt(self, text: str, images: Sequence[str] = ()) -> Verdict:
        """What moderation makes of a prompt (with its images as URLs), without acting on it."""
        if not self.active:
            return PASSED
        verdict = await self._blocklisted([text])
        if verdict.refused:
            return verdict
        return await self._endpoint_verdict("prompt", [moderation_input(text, images)])

    async def check_prompt(self, text: str, images: Sequence[str] = ()) -> None:
        """Raise PromptRefused (422) or ModerationUnavailable (503) for a prompt moderation
        refuses, once the refusal is counted; return for one it lets through."""
        verdict = await self.verdict_on_prompt(text, images)
        if not verdict.refused:
            return
        reason = verdict.reason or ""
        log.info("prompt refused by moderation: %s (%s)", reason, verdict.detail)
        if self._record is not None:
            await self._record("prompt", reason)
        metrics.moderation_refused("prompt", reason)
        raise prompt_refusal(verdict)

    async def check_answers(self, texts: Sequence[str]) -> Verdict:
        """What moderation makes of a turn's answers, all in one request to the endpoint. The
        caller settles the turn with it (and counts it: `record_refusal`)."""
        if not self.active or not texts:
            return PASSED
        verdict = await self._blocklisted(texts)
        if not verdict.refused:
            verdict = await self._endpoint_verdict("answer", list(texts))
        if verdict.refused:
            log.info("answers withheld by moderation: %s (%s)", verdict.reason, verdict.detail)
        return verdict


# ---------------------------------------------------------------- counts


_INSERT_REFUSAL = insert(ModerationRefusal)


def record_refusal(
    connection: Connection,
    *,
    stage: Stage,
    reason: str,
    battle_id: str | None = None,
    chat_id: str | None = None,
) -> None:
    """Count one refusal, in the caller's write transaction."""
    connection.execute(
        _INSERT_REFUSAL,
        {"stage": stage, "reason": reason[:64], "battle_id": battle_id, "chat_id": chat_id},
    )


@dataclass(frozen=True)
class RefusalCount:
    stage: str
    reason: str
    count: int
    last_at: datetime


async def refusal_counts(session: AsyncSession) -> list[RefusalCount]:
    """Refusals by stage and reason, most frequent first, for the operator's console."""
    rows = await session.execute(
        select(
            ModerationRefusal.stage,
            ModerationRefusal.reason,
            func.count(),
            func.max(ModerationRefusal.created_at),
        )
        .group_by(ModerationRefusal.stage, ModerationRefusal.reason)
        .order_by(func.count().desc(), ModerationRefusal.stage, ModerationRefusal.reason)
    )
    return [RefusalCount(stage, reason, int(n), last) for stage, reason, n, last in rows]


def moderation_setup(settings: Settings) -> str:
    """What moderation this arena runs, in a sentence for the operator (no key, no URL path)."""
    parts = []
    if settings.moderation_blocklist_file is not None:
        parts.append(f"the blocklist {settings.moderation_blocklist_file}")
    if settings.moderation_url:
        host = httpx.URL(settings.moderation_url).host
        down = (
            "battles and chats stop"
            if settings.moderation_when_down == "stop"
            else "battles and chats go on unmoderated"
        )
        parts.append(f"the moderation endpoint at {host} (when it is down, {down})")
    if not parts:
        return (
            "Moderation is off: set ARENA_MODERATION_URL or ARENA_MODERATION_BLOCKLIST_FILE "
            "(docs/moderation.md)."
        )
    return "Prompts and answers are checked by " + " and ".join(parts) + "."
