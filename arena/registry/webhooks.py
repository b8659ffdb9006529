"""Owners told by webhook when their models' status changes: queued with the change, delivered
signed, retried with backoff, never followed to an address the SSRF guard refuses.

A delivery is a row written in the transaction of the status change (an outbox): a change that
commits has its notice queued, one that rolls back has none, and a worker that dies leaves the
row for the next. Any worker of any instance delivers; each claims its rows by moving their next
attempt into the future first, in one conditional UPDATE.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import and_, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.background_tasks import stop_task
from arena.config import Settings
from arena.errors import ArenaError
from arena.models import Model, ModelStatus, Owner, WebhookDelivery, utcnow
from arena.registry.address_guard import check_url, parse_endpoint_url
from arena.registry.keys import KeyRing
from arena.registry.schemas import WebhookDeliveryOut
from arena.upstream.http import Target, UpstreamClient, UpstreamHTTPError

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Arena-Signature"
# Attempts in all, the first included; then the delivery is given up and the owner sees why.
MAX_ATTEMPTS: Final = 8
DELIVERY_TIMEOUT_SECONDS: Final = 10.0
# How long a claimed delivery is another worker's: longer than one attempt can take.
CLAIM_SECONDS: Final = 60.0
BATCH: Final = 20
POLL_SECONDS: Final = 2.0
_ERROR_CHARS: Final = 300


def status_event(old: ModelStatus, new: ModelStatus, *, automatic: bool) -> str | None:
    """The event an owner is told of for a status change, None for changes it is not."""
    if new == ModelStatus.active:
        return "approved" if old == ModelStatus.pending else "resumed"
    if new == ModelStatus.paused:
        return "auto_paused" if automatic else "paused"
    if new == ModelStatus.retired:
        return "retired"
    return None


async def queue_status_event(
    session: AsyncSession,
    *,
    model_id: int,
    model_name: str,
    old: ModelStatus,
    new: ModelStatus,
    reason: str,
    automatic: bool = False,
) -> None:
    """Queue the notice of a status change if the model's owner set a webhook (in the caller's
    transaction, with the change); `automatic` for the circuit breaker's pauses."""
    event = status_event(old, new, automatic=automatic)
    if event is None:
        return
    now = utcnow()
    payload = {
        "event": event,
        "model": model_name,
        "status": new.value,
        "previous_status": old.value,
        "reason": reason,
        "at": now.isoformat(),
    }
    owners_with_hooks = (
        select(
            Owner.id,
            literal(event),
            literal(json.dumps(payload, ensure_ascii=False)),
            literal(now, WebhookDelivery.created_at.type),
            literal(now, WebhookDelivery.next_attempt_at.type),
        )
        .join(Model, Model.owner_id == Owner.id)
        .where(Model.id == model_id, Owner.webhook_url.is_not(None))
    )
    await session.execute(
        insert(WebhookDelivery).from_select(
            ["owner_id", "event", "payload", "created_at", "next_attempt_at"], owners_with_hooks
        )
    )


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


async def checked_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL if the SSRF guard lets the arena post to it, with the guard's errors naming the
    field they are about."""
    try:
        return (await check_url(url, allow_private=allow_private)).url
    except ArenaError as refused:
        raise type(refused)(refused.message.replace("base_url", "webhook_url", 1)) from None


async def set_webhook(session: AsyncSession, *, owner: Owner, url: str, keys: KeyRing) -> str:
    """Point the owner's webhook at `url` (already checked) with a new secret; the secret."""
    secret = new_secret()
    owner.webhook_url = url
    owner.webhook_secret = keys.encrypt(secret)
    await session.flush()
    return secret


async def remove_webhook(session: AsyncSession, *, owner: Owner) -> None:
    owner.webhook_url = None
    owner.webhook_secret = None
    await session.flush()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`: the receiver recomputes it
    with its secret, and refuses an old timestamp to stop replays."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff(attempts: int, first_retry_seconds: float) -> timedelta:
    """The wait after the `attempts`-th failure: doubling from the first, at most six hours."""
    return timedelta(seconds=min(first_retry_seconds * 2 ** (attempts - 1), 6 * 3600))


@dataclass(frozen=True)
class _Claimed:
    id: int
    owner_id: int
    event: str
    payload: str
    attempts: int


class WebhookSender:
    """Delivers due webhook notices every couple of seconds, from each worker."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: UpstreamClient,
        keys: KeyRing,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.client = client
        self.keys = keys
        self.task: asyncio.Task[None] | None = None

    def start(self) -> WebhookSender:
        self.task = asyncio.create_task(self._loop(), name="webhooks")
        return self

    async def stop(self) -> None:
        await stop_task(self.task)

    async def _loop(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhooks: a delivery round failed; trying again shortly")
            await asyncio.sleep(POLL_SECONDS)

    async def deliver_due(self) -> int:
        """Claim the due deliveries and make one attempt at each; how many were attempted."""
        claimed = await self._claim()
        if claimed:
            await asyncio.gather(*(self._attempt(delivery) for delivery in claimed))
        return len(claimed)

    async def _claim(self) -> list[_Claimed]:
        now = utcnow()
        due = and_(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.given_up_at.is_(None),
            WebhookDelivery.next_attempt_at <= now,
        )
        oldest = select(WebhookDelivery.id).where(due).order_by(WebhookDelivery.id).limit(BATCH)
        async with self.sessionmaker() as session, session.begin():
            # `due` again on the row itself: of two workers that chose the same rows, the
            # second finds them no longer due once the first has moved them.
            rows = await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(oldest.scalar_subquery()), due)
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
                .returning(
                    WebhookDelivery.id,
                    WebhookDelivery.owner_id,
                    WebhookDelivery.event,
                    WebhookDelivery.payload,
                    WebhookDelivery.attempts,
                )
            )
            return [_Claimed(*row) for row in rows]

    async def _attempt(self, delivery: _Claimed) -> None:
        async with self.sessionmaker() as session:
            owner = await session.get(Owner, delivery.owner_id)
        error: str | None
        if owner is None or owner.webhook_url is None or owner.webhook_secret is None:
            error = "the owner removed its webhook"
            await self._record(delivery, error, give_up=True)
            return
        try:
            error = await self._post(owner.webhook_url, owner.webhook_secret, delivery)
        except Exception as exc:  # the sender must outlive anything a receiver does
            error = f"unexpected failure: {exc!r}"
        await self._record(delivery, error, give_up=False)

    async def _post(self, url: str, encrypted_secret: str, delivery: _Claimed) -> str | None:
        """One attempt; None when the receiver answered 2xx, else what went wrong."""
        try:
            checked = await check_url(url, allow_private=self.settings.allow_private_endpoints)
        except ArenaError as refused:  # the host now resolves somewhere the arena may not post
            return refused.message.replace("base_url", "webhook_url", 1)
        body = delivery.payload.encode()
        parsed = parse_endpoint_url(url)
        target = Target(
            scheme=parsed.scheme,
            host=checked.host,
            port=checked.port,
            connect_host=checked.connect_ip,
            path=parsed.raw_path.decode("ascii") or "/",
        )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "arena-webhooks",
            "X-Arena-Event": delivery.event,
            "X-Arena-Delivery": str(delivery.id),
            SIGNATURE_HEADER: signature(
                self.keys.decrypt(encrypted_secret), int(time.time()), body
            ),
            "Connection": "close",
        }
        post = self.client.post(target, headers, body)
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT_SECONDS):
                response = await post.response(connect_timeout=self.settings.connect_timeout)
                try:
                    await response.read(1024)  # a receiver's answer is not ours to keep
                finally:
                    response.close()
        except TimeoutError:
            return f"no answer within {DELIVERY_TIMEOUT_SECONDS:.0f} s"
        except UpstreamHTTPError as exc:
            return str(exc)[:_ERROR_CHARS]
        if 200 <= response.status < 300:
            return None
        return f"the receiver answered HTTP {response.status}"

    async def _record(self, delivery: _Claimed, error: str | None, *, give_up: bool) -> None:
        now = utcnow()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": now}
        if error is None:
            values["delivered_at"] = now
            values["last_error"] = None
        else:
            values["last_error"] = error[:_ERROR_CHARS]
            if give_up or attempts >= MAX_ATTEMPTS:
                values["given_up_at"] = now
            else:
                wait = backoff(attempts, self.settings.webhook_retry_seconds)
                values["next_attempt_at"] = now + wait
            log.info("webhook %d (%s) failed: %s", delivery.id, delivery.event, error)
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
            )


async def recent_deliveries(
    session: AsyncSession, *, owner_id: int, limit: int = 20
) -> list[WebhookDeliveryOut]:
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.owner_id == owner_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [
        WebhookDeliveryOut(
            event=row.event,
            payload=json.loads(row.payload),
            created_at=row.created_at,
            attempts=row.attempts,
            delivered_at=row.delivered_at,
            given_up_at=row.given_up_at,
            next_attempt_at=None if row.delivered_at or row.given_up_at else row.next_attempt_at,
            last_error=row.last_error,
        )
        for row in rows
    ]
