"""Model endpoints: registering them, and their lifecycle pending → active ⇄ paused → retired."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from arena.config import Settings
from arena.errors import Conflict, InvalidInput, NameTaken, NotAllowed, NotFound
from arena.models import Model, ModelStatus, ModelStatusEvent, Owner, utcnow
from arena.registry.keys import KeyRing, last4
from arena.registry.probe import ProbeResult, probe_endpoint
from arena.registry.webhooks import queue_status_event
from arena.upstream.client import Endpoint
from arena.upstream.http import UpstreamClient

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,99}$")
_BASE_URL_PATTERN = re.compile(r"^https?://[^\s/\x00-\x1f\x7f-\x9f]+[^\s\x00-\x1f\x7f-\x9f]*\Z")
_API_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,4096}")


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
    # Reads images in prompts (OpenAI image_url parts); the probe checks it with a tiny picture.
    supports_images: bool = False


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"name: {name!r} is not allowed; use 1-100 letters, digits and . _ : / + - "
            "starting with a letter or digit"
        )


def check_base_url(url: str) -> None:
    if not _BASE_URL_PATTERN.match(url) or len(url) > 2048:
        raise InvalidInput(
            f"base_url: {url[:100]!r} is not an http(s) URL such as http://host:8000/v1 "
            "(no spaces or control characters)"
        )


def check_api_key(key: str | None) -> None:
    """The key is sent in a request header: a CR or LF in it would start a header of its own."""
    if key and not _API_KEY_PATTERN.fullmatch(key):
        raise InvalidInput(
            "api_key: use printable ASCII only, without spaces or line breaks "
            "(the key as the endpoint's provider shows it)"
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
    check_api_key(new.api_key)
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
        supports_images=new.supports_images,
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


# By the status a model moves to: the statuses it may move from. Back to pending when an
# approved endpoint changes where it points (re-approval).
_MAY_COME_FROM = {
    ModelStatus.pending: {ModelStatus.active, ModelStatus.paused},
    ModelStatus.active: {ModelStatus.pending, ModelStatus.paused},
    ModelStatus.paused: {ModelStatus.active, ModelStatus.pending},
    ModelStatus.retired: {ModelStatus.pending, ModelStatus.active, ModelStatus.paused},
}


MAX_SAMPLING_WEIGHT: Final = 1000.0


async def set_sampling_weight(session: AsyncSession, *, model: Model, weight: float) -> Model:
    """How often the model is drawn, relative to the others (0: never, while it stays active)."""
    if not 0 <= weight <= MAX_SAMPLING_WEIGHT:
        raise InvalidInput(
            f"weight: a sampling weight is between 0 and {MAX_SAMPLING_WEIGHT:g} (got {weight:g})"
        )
    model.sampling_weight = weight
    await session.flush()
    return model


async def set_status(
    session: AsyncSession, *, model: Model, status: ModelStatus, reason: str = "", actor: str
) -> Model:
    """Move a model along its lifecycle; every change is kept as an event with its reason."""
    if model.status == status:
        return model
    if model.status not in _MAY_COME_FROM.get(status, set()):
        raise Conflict(
            f"Model {model.name!r} is {model.status.value}; it cannot become {status.value}."
            + (" A retired model stays retired." if model.status == ModelStatus.retired else "")
        )
    now = utcnow()
    previous = model.status
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
    await queue_status_event(
        session,
        model_id=model.id,
        model_name=model.name,
        old=previous,
        new=status,
        reason=reason,
    )
    await session.flush()
    return model


async def list_models(
    session: AsyncSession, *, status: ModelStatus | None = None, owner_id: int | None = None
) -> list[Model]:
    query = select(Model).order_by(Model.name)
    if status is not None:
        query = query.where(Model.status == status)
    if owner_id is not None:
        query = query.where(Model.owner_id == owner_id)
    return list((await session.scalars(query)).all())


# ------------------------------------------------------------------ owners' own endpoints

OPERATOR_ACTORS = frozenset({"admin", "cli", "operator"})
BREAKER_ACTOR = "circuit-breaker"
PENDING_REASON = "waiting for the operator's approval"
HEALTH_ACTOR = "health-probe"


def owner_actor(owner: Owner) -> str:
    return f"owner:{owner.id}"


def endpoint_of(model: Model, keys: KeyRing) -> Endpoint:
    return Endpoint(
        base_url=model.base_url,
        model=model.upstream_model,
        api_key=keys.decrypt(model.api_key_encrypted) if model.api_key_encrypted else None,
        max_tokens=model.max_tokens,
        temperature=model.temperature,
        system_prompt=model.system_prompt,
    )


async def owned_model(session: AsyncSession, *, owner: Owner, name: str) -> Model:
    model = await model_by_name(session, name)
    if model.owner_id != owner.id:
        raise NotAllowed(f"Model {name!r} belongs to another owner; you can manage only yours.")
    return model


async def latest_event(session: AsyncSession, model: Model) -> ModelStatusEvent | None:
    return await session.scalar(
        select(ModelStatusEvent)
        .where(ModelStatusEvent.model_id == model.id)
        .order_by(ModelStatusEvent.created_at.desc(), ModelStatusEvent.id.desc())
        .limit(1)
    )


async def register_model(
    session: AsyncSession,
    *,
    owner: Owner,
    new: NewModel,
    keys: KeyRing,
    client: UpstreamClient,
    settings: Settings,
) -> tuple[Model, ProbeResult]:
    """Probe the endpoint for real, then store it: pending, or active under ARENA_AUTO_APPROVE."""
    check_name(new.name)
    if await session.scalar(select(Model.id).where(Model.name == new.name)) is not None:
        raise NameTaken(f"name: a model named {new.name!r} exists already; choose another name")
    endpoint = Endpoint(
        base_url=new.base_url,
        model=new.upstream_model,
        api_key=new.api_key,
        max_tokens=new.max_tokens,
        temperature=new.temperature,
        system_prompt=new.system_prompt,
    )
    result = await probe_endpoint(client, endpoint, settings=settings, images=new.supports_images)
    result.raise_if_failed()
    status = ModelStatus.active if settings.auto_approve else ModelStatus.pending
    try:
        model = await add_model(
            session, new=new, keys=keys, owner_id=owner.id, status=status, actor=owner_actor(owner)
        )
    except IntegrityError:
        raise NameTaken(f"name: a model named {new.name!r} was registered just now") from None
    if status == ModelStatus.pending:
        model.status_reason = PENDING_REASON
        await session.flush()
    return model, result


@dataclass(frozen=True)
class ModelChanges:
    """The fields an owner sent, by name; a field absent is unchanged, `api_key` sent as None
    removes the key."""

    values: dict[str, Any]

    def has(self, field: str) -> bool:
        return field in self.values


async def update_model(
    session: AsyncSession,
    *,
    model: Model,
    changes: ModelChanges,
    keys: KeyRing,
    client: UpstreamClient,
    settings: Settings,
    actor: str,
) -> tuple[Model, ProbeResult | None]:
    """Apply an owner's changes; a new URL, model id or key is probed before it is kept, and so
    is image support when it is declared (the probe then sends a tiny picture too).

    A new URL or model id points the public name at a possibly different model, so an approved
    model goes back to pending unless the arena approves automatically."""
    if model.status == ModelStatus.retired:
        raise Conflict(f"Model {model.name!r} is retired; a retired model cannot change.")
    values = changes.values
    if "base_url" in values:
        check_base_url(values["base_url"])
    if changes.has("api_key"):
        check_api_key(values["api_key"])
    moved = (
        values.get("base_url", model.base_url).rstrip("/") != model.base_url
        or values.get("model", model.upstream_model) != model.upstream_model
    )
    result: ProbeResult | None = None
    reads_images = bool(values.get("supports_images", model.supports_images))
    newly_reads_images = reads_images and not model.supports_images
    if moved or changes.has("api_key") or newly_reads_images:
        current = endpoint_of(model, keys)
        endpoint = Endpoint(
            base_url=values.get("base_url", current.base_url),
            model=values.get("model", current.model),
            api_key=values["api_key"] if changes.has("api_key") else current.api_key,
            max_tokens=values.get("max_tokens", current.max_tokens),
            temperature=values.get("temperature", current.temperature),
            system_prompt=values.get("system_prompt", current.system_prompt),
        )
        result = await probe_endpoint(client, endpoint, settings=settings, images=reads_images)
        result.raise_if_failed()
    for field in ("organization", "license", "description", "max_tokens", "temperature"):
        if field in values:
            setattr(model, field, values[field])
    if "system_prompt" in values:
        model.system_prompt = values["system_prompt"]
    if "supports_images" in values:
        model.supports_images = bool(values["supports_images"])
    if "base_url" in values:
        model.base_url = values["base_url"].rstrip("/")
    if "model" in values:
        model.upstream_model = values["model"]
    if changes.has("api_key"):
        key: str | None = values["api_key"]
        model.api_key_encrypted = keys.encrypt(key) if key else None
        model.api_key_last4 = last4(key) if key else None
    if moved and not settings.auto_approve and model.status != ModelStatus.pending:
        await set_status(
            session,
            model=model,
            status=ModelStatus.pending,
            reason="the endpoint changed (base URL or model id); waiting for approval again",
            actor=actor,
        )
    await session.flush()
    return model, result


async def owner_pause(session: AsyncSession, *, model: Model, owner: Owner, reason: str) -> Model:
    if model.status == ModelStatus.paused:
        return model
    if model.status != ModelStatus.active:
        raise Conflict(
            f"Model {model.name!r} is {model.status.value}; only an active model can be paused."
        )
    return await _owner_sets(
        session, model, owner, ModelStatus.paused, reason or "paused by its owner"
    )


async def owner_resume(
    session: AsyncSession,
    *,
    model: Model,
    owner: Owner,
    keys: KeyRing,
    client: UpstreamClient,
    settings: Settings,
) -> tuple[Model, ProbeResult | None]:
    """Resume a model its owner (or the circuit breaker) paused; never one the operator paused,
    and never one not approved yet. After an automatic pause the endpoint must answer first."""
    if model.status == ModelStatus.active:
        return model, None
    if model.status == ModelStatus.pending or (
        model.status == ModelStatus.paused and model.activated_at is None
    ):
        raise Conflict(
            f"Model {model.name!r} waits for the operator's approval; it starts once approved."
        )
    if model.status != ModelStatus.paused:
        raise Conflict(f"Model {model.name!r} is {model.status.value}; it cannot be resumed.")
    event = await latest_event(session, model)
    paused_by = event.actor if event else ""
    if paused_by in OPERATOR_ACTORS:
        why = model.status_reason or "no reason given"
        raise NotAllowed(
            f"Model {model.name!r} was paused by the operator ({why}); "
            "only the operator can resume it."
        )
    result: ProbeResult | None = None
    if paused_by == BREAKER_ACTOR:
        result = await probe_endpoint(
            client, endpoint_of(model, keys), settings=settings, images=model.supports_images
        )
        result.raise_if_failed()
    resumed = await _owner_sets(session, model, owner, ModelStatus.active, "resumed by its owner")
    return resumed, result


async def owner_retire(session: AsyncSession, *, model: Model, owner: Owner, reason: str) -> Model:
    return await _owner_sets(
        session, model, owner, ModelStatus.retired, reason or "retired by its owner"
    )


async def _owner_sets(
    session: AsyncSession, model: Model, owner: Owner, status: ModelStatus, reason: str
) -> Model:
    """A status change the owner made, kept with its reason and the owner as its actor."""
    return await set_status(
        session, model=model, status=status, reason=reason, actor=owner_actor(owner)
    )


async def approve_model(session: AsyncSession, *, model: Model, reason: str, actor: str) -> Model:
    if model.status != ModelStatus.pending:
        raise Conflict(
            f"Model {model.name!r} is {model.status.value}; only a pending model can be approved."
        )
    return await set_status(
        session, model=model, status=ModelStatus.active, reason=reason or "approved", actor=actor
    )


async def rotate_endpoint_keys(session: AsyncSession, *, keys: KeyRing) -> int:
    """Re-encrypt every stored endpoint key with the newest key; all or nothing."""
    models = list(await session.scalars(select(Model).where(Model.api_key_encrypted.is_not(None))))
    unreadable = []
    for model in models:
        try:
            model.api_key_encrypted = keys.rotate(model.api_key_encrypted or "")
        except ValueError:
            unreadable.append(model.name)
    if unreadable:
        raise InvalidInput(
            f"The keys of {', '.join(unreadable)} cannot be decrypted with ARENA_SECRET_KEY or "
            "ARENA_OLD_SECRET_KEYS; list the key they were encrypted with in "
            "ARENA_OLD_SECRET_KEYS and run again. Nothing was changed."
        )
    await session.flush()
    return len(models)
