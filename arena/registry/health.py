"""Endpoint health: the circuit breaker that pauses failing models, the probe that resumes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Final

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from arena.background_tasks import stop_task
from arena.config import Settings
from arena.models import (
    Battle,
    Chat,
    ChatMessage,
    ChatRole,
    Message,
    Model,
    ModelStatus,
    ModelStatusEvent,
    Side,
    utcnow,
)
from arena.registry.failure_reasons import explain_stored_error
from arena.registry.keys import KeyRing
from arena.registry.probe import probe_endpoint
from arena.registry.service import (
    BREAKER_ACTOR,
    HEALTH_ACTOR,
    endpoint_of,
    latest_event,
    set_status,
)
from arena.registry.webhooks import queue_status_event
from arena.upstream.client import Endpoint
from arena.upstream.http import UpstreamClient

log = logging.getLogger(__name__)

# Probes of auto-paused endpoints running at once, so a long outage list stays polite.
_CONCURRENT_PROBES: Final = 8


def answers_of(model_id: int) -> ColumnElement[bool]:
    """The condition selecting this model's answers among messages joined with their battle."""
    return or_(
        and_(Battle.model_a_id == model_id, Message.side == Side.a),
        and_(Battle.model_b_id == model_id, Message.side == Side.b),
    )


def chat_answers_of(model_id: int) -> ColumnElement[bool]:
    """The condition selecting this model's answers among chat messages joined with their chat."""
    return and_(Chat.model_id == model_id, ChatMessage.role == ChatRole.assistant)


async def _last_failure_kind(session: AsyncSession, model_id: int, base_url: str) -> str:
    """What kind of failure the model's latest failed answer (in a battle or a chat) was, as its
    owner may read it."""
    in_battles = (
        await session.execute(
            select(Message.error, Message.created_at)
            .join(Battle, Battle.id == Message.battle_id)
            .where(Message.error.is_not(None), answers_of(model_id))
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(1)
        )
    ).one_or_none()
    in_chats = (
        await session.execute(
            select(ChatMessage.error, ChatMessage.created_at)
            .join(Chat, Chat.id == ChatMessage.chat_id)
            .where(ChatMessage.error.is_not(None), chat_answers_of(model_id))
            .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
            .limit(1)
        )
    ).one_or_none()
    found = [row for row in (in_battles, in_chats) if row is not None]
    if not found:
        return "unknown"
    error, _at = max(found, key=lambda row: row[1])
    return explain_stored_error(error or "", base_url=base_url, api_key=None).kind


async def trip_breakers(
    session: AsyncSession, *, threshold: int, model_ids: Iterable[int] | None = None
) -> list[str]:
    """Pause every active model (of `model_ids`, or all) whose consecutive failed answers reached
    `threshold`, with the reason kept; the names paused. A threshold of 0 never pauses."""
    if threshold <= 0:
        return []
    query = select(Model.id, Model.name, Model.base_url, Model.consecutive_failures).where(
        Model.status == ModelStatus.active, Model.consecutive_failures >= threshold
    )
    if model_ids is not None:
        query = query.where(Model.id.in_(list(model_ids)))
    paused = []
    for model_id, name, base_url, failures in (await session.execute(query)).all():
        kind = await _last_failure_kind(session, model_id, base_url)
        reason = (
            f"paused automatically after {failures} consecutive failed answers "
            f"(last failure: {kind}); resumed automatically once the endpoint answers again"
        )
        # Conditional: two turns finishing together pause once, with one event.
        changed = await session.execute(
            update(Model)
            .where(Model.id == model_id, Model.status == ModelStatus.active)
            .values(status=ModelStatus.paused, status_reason=reason, paused_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
        if changed.rowcount == 1:  # type: ignore[attr-defined]
            session.add(
                ModelStatusEvent(
                    model_id=model_id,
                    status=ModelStatus.paused,
                    reason=reason,
                    actor=BREAKER_ACTOR,
                )
            )
            await queue_status_event(
                session,
                model_id=model_id,
                model_name=name,
                old=ModelStatus.active,
                new=ModelStatus.paused,
                reason=reason,
                automatic=True,
            )
            log.warning("model %s paused by the circuit breaker: %s", name, reason)
            paused.append(name)
    await session.flush()
    return paused


async def auto_paused_models(session: AsyncSession) -> list[Model]:
    """Paused models whose latest status change was the circuit breaker's."""
    paused = await session.scalars(select(Model).where(Model.status == ModelStatus.paused))
    found = []
    for model in paused:
        event = await latest_event(session, model)
        if event is not None and event.actor == BREAKER_ACTOR:
            found.append(model)
    return found


class HealthMonitor:
    """Every `health_probe_seconds`: pause models over the breaker threshold (a sweep, beside the
    check after each turn) and probe the automatically paused ones, resuming those that answer.

    Every worker runs one; the changes are conditional, so running twice does no harm."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: UpstreamClient,
        keys: KeyRing,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.client = client
        self.keys = keys
        self._task: asyncio.Task[None] | None = None

    def start(self) -> HealthMonitor:
        if self.settings.health_probe_seconds > 0:
            self._task = asyncio.create_task(self._loop(), name="endpoint-health")
        return self

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_probe_seconds)
            try:
                await self.run_once()
            except Exception:
                log.exception("endpoint health round failed; trying again next round")

    async def run_once(self) -> list[str]:
        """One round; the names of the models resumed."""
        candidates: list[tuple[int, str, Endpoint]] = []
        async with self.sessionmaker() as session, session.begin():
            await trip_breakers(session, threshold=self.settings.circuit_breaker_failures)
            for model in await auto_paused_models(session):
                try:
                    candidates.append((model.id, model.name, endpoint_of(model, self.keys)))
                except ValueError:
                    log.exception("model %s: its API key cannot be decrypted", model.name)
        gate = asyncio.Semaphore(_CONCURRENT_PROBES)

        async def probe_and_resume(model_id: int, name: str, endpoint: Endpoint) -> str | None:
            async with gate:
                result = await probe_endpoint(self.client, endpoint, settings=self.settings)
            if not result.ok:
                log.info("model %s still fails its health probe: %s", name, result.reason)
                return None
            async with self.sessionmaker() as session, session.begin():
                model = await session.get(Model, model_id, with_for_update=True)
                event = await latest_event(session, model) if model else None
                if model is None or model.status != ModelStatus.paused or event is None:
                    return None
                if event.actor != BREAKER_ACTOR:
                    return None
                await set_status(
                    session,
                    model=model,
                    status=ModelStatus.active,
                    reason=(
                        f"answered the health probe again ({result.latency_ms or 0:.0f} ms); "
                        "resumed automatically"
                    ),
                    actor=HEALTH_ACTOR,
                )
            log.info("model %s answers again and was resumed", name)
            return name

        resumed = await asyncio.gather(*(probe_and_resume(*c) for c in candidates))
        return [name for name in resumed if name is not None]
