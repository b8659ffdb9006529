"""Model endpoints: registering them, and their lifecycle pending → active ⇄ paused → retired."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.errors import Conflict, InvalidInput, NameTaken, NotFound
from arena.models import Model, ModelStatus, ModelStatusEvent, utcnow
from arena.registry.keys import KeyRing, last4

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,99}$")


@dataclass(frozen=True)
class NewModel:
    name: str
    base_url: str
    upstream_model: str
    api_key: str | None = None
    organization: str = ""
    license: str = ""
    description: str = ""
    max_tokens: int = 1024
    temperature: float = 0.7
    system_prompt: str = ""
    sampling_weight: float = 1.0


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"name: {name!r} is not allowed; use 1-100 letters, digits and . _ : / + - "
            "starting with a letter or digit"
        )


def check_base_url(url: str) -> None:
    if not re.match(r"^https?://[^\s/]+", url) or len(url) > 2048:
        raise InvalidInput(
            f"base_url: {url[:100]!r} is not an http(s) URL such as http://host:8000/v1"
        )


async def model_by_name(session: AsyncSession, name: str) -> Model:
    model = await session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"No model named {name!r}. `arena models list` shows the names.")
    return model


async def add_model(
    session: AsyncSession,
    *,
    new: NewModel,
    keys: KeyRing,
    owner_id: int | None = None,
    status: ModelStatus = ModelStatus.active,
    actor: str = "operator",
) -> Model:
    check_name(new.name)
    check_base_url(new.base_url)
    if await session.scalar(select(Model.id).where(Model.name == new.name)) is not None:
        raise NameTaken(f"A model named {new.name!r} exists already; choose another name.")
    now = utcnow()
    model = Model(
        owner_id=owner_id,
        name=new.name,
        organization=new.organization,
        license=new.license,
        description=new.description,
        base_url=new.base_url.rstrip("/"),
        upstream_model=new.upstream_model,
        api_key_encrypted=keys.encrypt(new.api_key) if new.api_key else None,
        api_key_last4=last4(new.api_key) if new.api_key else None,
        max_tokens=new.max_tokens,
        temperature=new.temperature,
        system_prompt=new.system_prompt,
        sampling_weight=new.sampling_weight,
        status=status,
        created_at=now,
        activated_at=now if status == ModelStatus.active else None,
    )
    session.add(model)
    await session.flush()
    session.add(
        ModelStatusEvent(model_id=model.id, status=status, reason="registered", actor=actor)
    )
    await session.flush()
    return model


_ALLOWED = {
    ModelStatus.active: {ModelStatus.pending, ModelStatus.paused},
    ModelStatus.paused: {ModelStatus.active, ModelStatus.pending},
    ModelStatus.retired: {ModelStatus.pending, ModelStatus.active, ModelStatus.paused},
}


async def set_status(
    session: AsyncSession, *, model: Model, status: ModelStatus, reason: str = "", actor: str
) -> Model:
    """Move a model along its lifecycle; every change is kept as an event with its reason."""
    if model.status == status:
        return model
    if model.status not in _ALLOWED.get(status, set()):
        raise Conflict(
            f"Model {model.name!r} is {model.status.value}; it cannot become {status.value}."
            + (" A retired model stays retired." if model.status == ModelStatus.retired else "")
        )
    now = utcnow()
    model.status = status
    model.status_reason = reason
    if status == ModelStatus.active:
        model.activated_at = model.activated_at or now
        model.consecutive_failures = 0
    elif status == ModelStatus.paused:
        model.paused_at = now
    elif status == ModelStatus.retired:
        model.retired_at = now
    session.add(ModelStatusEvent(model_id=model.id, status=status, reason=reason, actor=actor))
    await session.flush()
    return model


async def list_models(session: AsyncSession) -> list[Model]:
    return list((await session.scalars(select(Model).order_by(Model.name))).all())
