"""Which judge labels the battles: the one set with `arena judge set` (or by the demo), else the
ARENA_JUDGE_* settings, else none. Its URL passes the SSRF guard and its key is stored encrypted,
as for model endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.audit import record_action
from arena.config import Settings
from arena.errors import InvalidInput
from arena.judge.demo_judge import DEMO_JUDGE_MODEL
from arena.models import JudgeEndpoint, utcnow
from arena.registry.address_guard import check_url
from arena.registry.keys import KeyRing, last4

MAX_MODEL_CHARS: Final = 200

JudgeSource = Literal["set", "settings", "demo"]


@dataclass(frozen=True)
class Judge:
    """A judge ready to be called; `source` says where it was named."""

    base_url: str
    model: str
    api_key: str | None
    source: JudgeSource

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"


@dataclass(frozen=True)
class JudgeName:
    """What the pages may say of the judge: its model id and whether it is the demo one."""

    model: str
    demo: bool


async def _stored(session: AsyncSession) -> JudgeEndpoint | None:
    return await session.scalar(select(JudgeEndpoint).order_by(JudgeEndpoint.id).limit(1))


async def current_judge(
    session: AsyncSession, *, settings: Settings, keys: KeyRing
) -> Judge | None:
    """The judge in effect, its key decrypted; None when the arena has none."""
    stored = await _stored(session)
    if stored is not None:
        key = keys.decrypt(stored.api_key_encrypted) if stored.api_key_encrypted else None
        return Judge(stored.base_url, stored.model, key, "demo" if stored.demo else "set")
    if settings.judge_base_url and settings.judge_model:
        key = settings.judge_api_key.get_secret_value() if settings.judge_api_key else None
        return Judge(settings.judge_base_url, settings.judge_model, key, "settings")
    return None


async def judge_name(session: AsyncSession, *, settings: Settings) -> JudgeName | None:
    """The judge's public description, without touching its key."""
    stored = await _stored(session)
    if stored is not None:
        return JudgeName(stored.model, stored.demo)
    if settings.judge_base_url and settings.judge_model:
        return JudgeName(settings.judge_model, False)
    return None


def _check_model(model: str) -> str:
    model = model.strip()
    if not model or len(model) > MAX_MODEL_CHARS or not model.isprintable():
        raise InvalidInput(
            f"model: give the judge's model id as its endpoint knows it (1 to {MAX_MODEL_CHARS}"
            f" printable characters); got {model[:40]!r}"
        )
    return model


async def set_judge(
    session: AsyncSession,
    *,
    base_url: str,
    model: str,
    api_key: str | None,
    keys: KeyRing,
    allow_private: bool,
    actor: str,
    demo: bool = False,
) -> JudgeEndpoint:
    """Name the judge (replacing any): the URL is checked by the SSRF guard now, and again
    before every call; the key is stored encrypted. Recorded in the audit log."""
    model = _check_model(model)
    checked = await check_url(base_url.strip(), allow_private=allow_private)
    await session.execute(delete(JudgeEndpoint))
    judge = JudgeEndpoint(
        base_url=checked.url,
        model=model,
        api_key_encrypted=keys.encrypt(api_key) if api_key else None,
        api_key_last4=last4(api_key) if api_key else None,
        demo=demo,
        set_at=utcnow(),
    )
    session.add(judge)
    record_action(
        session, actor=actor, action="judge.set", target=f"{model} at {checked.url}"[:320]
    )
    await session.flush()
    return judge


async def unset_judge(session: AsyncSession, *, actor: str) -> bool:
    """Forget the judge set with `arena judge set`; whether there was one. Labels stay."""
    removed = await session.execute(delete(JudgeEndpoint))
    gone = bool(removed.rowcount)  # type: ignore[attr-defined]
    if gone:
        record_action(session, actor=actor, action="judge.unset")
    return gone


async def set_demo_judge(session: AsyncSession, *, base_url: str, settings: Settings) -> bool:
    """Point the demo judge at the demo server unless the operator named a judge; whether the
    demo judge is the one in effect now."""
    stored = await _stored(session)
    if stored is not None and not stored.demo:
        return False
    if stored is None and settings.judge_base_url:
        return False
    if stored is not None:
        stored.base_url = base_url
        await session.flush()
        return True
    session.add(
        JudgeEndpoint(base_url=base_url, model=DEMO_JUDGE_MODEL, demo=True, set_at=utcnow())
    )
    await session.flush()
    return True
