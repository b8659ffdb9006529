"""Owner routes: sign-up, endpoint registration and lifecycle, stats, and the /owner page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles.settled import vote_window
from arena.config import Settings
from arena.db import SessionDep
from arena.errors import InviteNotValid
from arena.models import Model, Owner
from arena.registry import owners, webhooks
from arena.registry import service as registry
from arena.registry.auth import (
    OwnerDep,
    check_not_blocked,
    client_address,
    failed_auth_window,
    refuse_sign_in,
    signup_window,
)
from arena.registry.keys import KeyRing
from arena.registry.probe import ProbeResult, probe_endpoint
from arena.registry.schemas import (
    ModelChanged,
    ModelIn,
    ModelOut,
    ModelPatch,
    ModelRegistered,
    ModelStats,
    OwnerCreated,
    OwnerIn,
    OwnerOut,
    OwnerToken,
    ProbeOut,
    ReasonIn,
    WebhookIn,
    WebhookOut,
    WebhookSet,
)
from arena.registry.stats import model_out, model_stats
from arena.templating import templates
from arena.upstream.http import UpstreamClient

router = APIRouter(prefix="/api", tags=["owners"])
pages_router = APIRouter(include_in_schema=False)

OptionalReason = Annotated[ReasonIn | None, Body()]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _model_out(request: Request, session: SessionDep, model: Model) -> ModelOut:
    return await model_out(session, model=model, window=vote_window(_settings(request)))


def _keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


def _http(request: Request) -> UpstreamClient:
    client: UpstreamClient = request.app.state.http
    return client


@router.post("/owners", status_code=status.HTTP_201_CREATED)
async def create_owner(body: OwnerIn, request: Request, session: SessionDep) -> OwnerCreated:
    settings = _settings(request)
    address = client_address(request)
    signups = signup_window(request)
    check_not_blocked(signups, address, "sign-ups")
    signups.record(address)
    try:
        owner, token = await owners.create_owner(
            session,
            name=body.name,
            email=body.email,
            invite_code=body.invite_code,
            open_signup=settings.open_signup,
            invite_days=settings.invite_days,
        )
    except InviteNotValid as refused:
        # As with tokens, only wrong codes are limited: a valid one always signs up.
        refuse_sign_in(failed_auth_window(request), address, refused)
    await session.commit()
    return OwnerCreated(owner_id=owner.id, name=owner.name, email=owner.email, token=token)


@router.get("/owners/me")
async def who_am_i(owner: OwnerDep) -> OwnerOut:
    return OwnerOut(id=owner.id, name=owner.name, email=owner.email, created_at=owner.created_at)


@router.put("/owners/me/webhook")
async def set_webhook(
    body: WebhookIn, request: Request, session: SessionDep, owner: OwnerDep
) -> WebhookSet:
    """Post the status changes of this owner's models to `url`, signed with a new secret that
    this answer shows once (the X-Arena-Signature header: t=<unix time>,v1=<HMAC-SHA256 of
    "<t>." + body, hex>)."""
    settings = request.app.state.settings
    url = await webhooks.checked_webhook_url(
        body.url, allow_private=settings.allow_private_endpoints
    )
    secret = await webhooks.set_webhook(session, owner=owner, url=url, keys=request.app.state.keys)
    await session.commit()
    return WebhookSet(url=url, secret=secret)


@router.get("/owners/me/webhook")
async def get_webhook(session: SessionDep, owner: OwnerDep) -> WebhookOut:
    """The webhook's URL (never its secret) and its latest deliveries, newest first."""
    deliveries = await webhooks.recent_deliveries(session, owner_id=owner.id)
    return WebhookOut(
        url=owner.webhook_url,
        deliveries=deliveries,
    )


@router.delete("/owners/me/webhook", status_code=status.HTTP_204_NO_CONTENT)
async def remove_webhook(session: SessionDep, owner: OwnerDep) -> None:
    await webhooks.remove_webhook(session, owner=owner)
    await session.commit()


@router.post("/owners/me/token")
async def new_token(owner: OwnerDep, session: SessionDep) -> OwnerToken:
    """A fresh token; the one used for this call stops working."""
    token = await owners.issue_new_token(session, owner=owner)
    await session.commit()
    return OwnerToken(owner_id=owner.id, token=token)


@router.post("/models", status_code=status.HTTP_201_CREATED)
async def register_model(
    body: ModelIn, request: Request, session: SessionDep, owner: OwnerDep
) -> ModelRegistered:
    new = registry.NewModel(
        name=body.name,
        base_url=body.base_url,
        upstream_model=body.model,
        api_key=body.api_key,
        organization=body.organization,
        license=body.license,
        description=body.description,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        system_prompt=body.system_prompt,
        supports_images=body.supports_images,
    )
    model, result = await registry.register_model(
        session,
        owner=owner,
        new=new,
        keys=_keys(request),
        client=_http(request),
        settings=_settings(request),
    )
    await session.commit()
    return ModelRegistered(
        id=model.id, name=model.name, status=model.status, probe=ProbeOut.of(result)
    )


@router.get("/models/mine")
async def my_models(request: Request, session: SessionDep, owner: OwnerDep) -> list[ModelOut]:
    return [
        await _model_out(request, session, m)
        for m in await registry.list_models(session, owner_id=owner.id)
    ]


async def _owned_model(name: str, session: SessionDep, owner: OwnerDep) -> Model:
    """The owner's model by its public name: 404 if none, 403 if another owner's. Routes with a
    body load the model themselves, so that a bad body is a 422 whatever the name."""
    return await registry.owned_model(session, owner=owner, name=name)


OwnedModelDep = Annotated[Model, Depends(_owned_model)]


async def _changed(
    request: Request, session: SessionDep, model: Model, result: ProbeResult | None
) -> ModelChanged:
    return ModelChanged(
        model=await _model_out(request, session, model),
        probe=ProbeOut.of(result) if result is not None else None,
    )


@router.get("/models/{name}")
async def my_model(model: OwnedModelDep, request: Request, session: SessionDep) -> ModelOut:
    return await _model_out(request, session, model)


@router.patch("/models/{name}")
async def change_model(
    name: str, body: ModelPatch, request: Request, session: SessionDep, owner: OwnerDep
) -> ModelChanged:
    model = await _owned_model(name, session, owner)
    model, result = await registry.update_model(
        session,
        model=model,
        changes=registry.ModelChanges(body.model_dump(include=body.model_fields_set)),
        keys=_keys(request),
        client=_http(request),
        settings=_settings(request),
        actor=registry.owner_actor(owner),
    )
    await session.commit()
    return await _changed(request, session, model, result)


@router.post("/models/{name}/test")
async def test_model(model: OwnedModelDep, request: Request, session: SessionDep) -> ProbeOut:
    """Probe the endpoint now; a failed probe is an answer (ok false), not an error."""
    endpoint = registry.endpoint_of(model, _keys(request))
    reads_images = model.supports_images
    await session.rollback()  # hold no transaction while the endpoint thinks
    result = await probe_endpoint(
        _http(request), endpoint, settings=_settings(request), images=reads_images
    )
    return ProbeOut.of(result)


OwnerMove = Callable[..., Awaitable[Model]]


async def _move(
    name: str,
    request: Request,
    session: AsyncSession,
    owner: Owner,
    body: ReasonIn | None,
    move: OwnerMove,
) -> ModelOut:
    """An owner's pause or retire, with the reason given (if any)."""
    model = await _owned_model(name, session, owner)
    model = await move(session, model=model, owner=owner, reason=body.reason if body else "")
    await session.commit()
    return await _model_out(request, session, model)


@router.post("/models/{name}/pause")
async def pause_model(
    name: str, request: Request, session: SessionDep, owner: OwnerDep, body: OptionalReason = None
) -> ModelOut:
    return await _move(name, request, session, owner, body, registry.owner_pause)


@router.post("/models/{name}/resume")
async def resume_model(
    model: OwnedModelDep, request: Request, session: SessionDep, owner: OwnerDep
) -> ModelChanged:
    model, result = await registry.owner_resume(
        session,
        model=model,
        owner=owner,
        keys=_keys(request),
        client=_http(request),
        settings=_settings(request),
    )
    await session.commit()
    return await _changed(request, session, model, result)


@router.post("/models/{name}/retire")
async def retire_model(
    name: str, request: Request, session: SessionDep, owner: OwnerDep, body: OptionalReason = None
) -> ModelOut:
    return await _move(name, request, session, owner, body, registry.owner_retire)


@router.get("/models/{name}/stats")
async def stats(model: OwnedModelDep, request: Request, session: SessionDep) -> ModelStats:
    settings = _settings(request)
    return await model_stats(
        session,
        model=model,
        keys=_keys(request),
        breaker_threshold=settings.circuit_breaker_failures,
        window=vote_window(settings),
    )


@pages_router.get("/owner", response_class=HTMLResponse)
async def owner_page(request: Request) -> HTMLResponse:
    settings = _settings(request)
    return templates.TemplateResponse(
        request, "owner.html", {"open_signup": settings.open_signup, "nav": "owner"}
    )
