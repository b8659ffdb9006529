"""The operator's API (ARENA_ADMIN_TOKEN): approve and steer models, manage owners and invites."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import status as http_status
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from arena.audit import (
    ADMIN_API_ACTOR,
    STATUS_ACTIONS,
    actions_csv_response,
    recent_actions,
    record_action,
)
from arena.battles.settled import vote_window
from arena.config import Settings
from arena.db import SessionDep
from arena.errors import InvalidInput
from arena.models import Model, ModelStatus, Owner
from arena.registry import owners
from arena.registry import service as registry
from arena.registry.auth import require_admin
from arena.registry.schemas import (
    InviteIn,
    InviteOut,
    ModelOut,
    ModelStats,
    OperatorActionOut,
    OwnerOut,
    OwnerToken,
    ReasonIn,
    RequiredReasonIn,
    WeightIn,
)
from arena.registry.stats import model_out, model_stats

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(require_admin)])

ADMIN_ACTOR = ADMIN_API_ACTOR
OptionalReason = Annotated[ReasonIn | None, Body()]
RequiredReason = Annotated[RequiredReasonIn | None, Body()]


def _owner_out(owner: Owner, models: int | None = None) -> OwnerOut:
    return OwnerOut(
        id=owner.id,
        name=owner.name,
        email=owner.email,
        created_at=owner.created_at,
        revoked_at=owner.revoked_at,
        models=models,
    )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _with_owner_email(request: Request, session: SessionDep, model: Model) -> ModelOut:
    email = (
        await session.scalar(select(Owner.email).where(Owner.id == model.owner_id))
        if model.owner_id is not None
        else None
    )
    return await model_out(
        session, model=model, window=vote_window(_settings(request)), owner_email=email
    )


# Model names from `arena models add` may hold a slash, hence `:path` (every route has a suffix).


@router.get("/models")
async def list_models(
    request: Request, session: SessionDep, status: ModelStatus | None = None
) -> list[ModelOut]:
    models = await registry.list_models(session, status=status)
    emails: dict[int, str] = {
        row.id: row.email for row in await session.execute(select(Owner.id, Owner.email))
    }
    window = vote_window(_settings(request))
    return [
        await model_out(
            session,
            model=m,
            window=window,
            owner_email=emails.get(m.owner_id) if m.owner_id else None,
        )
        for m in models
    ]


@router.get("/models/{name:path}/stats")
async def stats(name: str, request: Request, session: SessionDep) -> ModelStats:
    settings = _settings(request)
    return await model_stats(
        session,
        model=await registry.model_by_name(session, name),
        keys=request.app.state.keys,
        breaker_threshold=settings.circuit_breaker_failures,
        window=vote_window(settings),
    )


@router.post("/models/{name:path}/approve")
async def approve(
    name: str, request: Request, session: SessionDep, body: OptionalReason = None
) -> ModelOut:
    model = await registry.approve_model(
        session,
        model=await registry.model_by_name(session, name),
        reason=body.reason if body else "",
        actor=ADMIN_ACTOR,
    )
    record_action(
        session,
        actor=ADMIN_ACTOR,
        action="model.approve",
        target=model.name,
        reason=body.reason if body else "",
    )
    await session.commit()
    return await _with_owner_email(request, session, model)


async def _set(
    request: Request, session: SessionDep, name: str, to: ModelStatus, reason: str
) -> ModelOut:
    model = await registry.set_status(
        session,
        model=await registry.model_by_name(session, name),
        status=to,
        reason=reason,
        actor=ADMIN_ACTOR,
    )
    record_action(
        session, actor=ADMIN_ACTOR, action=STATUS_ACTIONS[to], target=model.name, reason=reason
    )
    await session.commit()
    return await _with_owner_email(request, session, model)


def _required_reason(body: RequiredReasonIn | None, action: str) -> str:
    # A missing body would otherwise be reported against the request, not the field to send.
    if body is None:
        raise InvalidInput(
            f'reason: send {{"reason": "..."}}; to {action} a model the operator gives a reason, '
            "kept with the change and shown to the owner"
        )
    return body.reason


@router.post("/models/{name:path}/pause")
async def pause(
    name: str, request: Request, session: SessionDep, body: RequiredReason = None
) -> ModelOut:
    return await _set(request, session, name, ModelStatus.paused, _required_reason(body, "pause"))


@router.post("/models/{name:path}/resume")
async def resume(
    name: str, request: Request, session: SessionDep, body: OptionalReason = None
) -> ModelOut:
    return await _set(
        request,
        session,
        name,
        ModelStatus.active,
        (body.reason if body else "") or "resumed by the operator",
    )


@router.post("/models/{name:path}/retire")
async def retire(
    name: str, request: Request, session: SessionDep, body: RequiredReason = None
) -> ModelOut:
    return await _set(request, session, name, ModelStatus.retired, _required_reason(body, "retire"))


@router.post("/models/{name:path}/weight")
async def set_weight(name: str, body: WeightIn, request: Request, session: SessionDep) -> ModelOut:
    """How often the model is drawn, relative to the others (published by /api/sampling)."""
    model = await registry.set_sampling_weight(
        session, model=await registry.model_by_name(session, name), weight=body.weight
    )
    record_action(
        session,
        actor=ADMIN_ACTOR,
        action="model.weight",
        target=model.name,
        reason=f"weight {body.weight:g}" + (f": {body.reason}" if body.reason else ""),
    )
    await session.commit()
    return await _with_owner_email(request, session, model)


@router.get("/owners")
async def list_owners(session: SessionDep) -> list[OwnerOut]:
    return [_owner_out(s.owner, s.models) for s in await owners.list_owners(session)]


@router.post("/owners/{ref}/revoke")
async def revoke_owner(ref: str, session: SessionDep) -> OwnerOut:
    owner = await owners.revoke_owner(session, owner=await owners.owner_by_ref(session, ref))
    record_action(session, actor=ADMIN_ACTOR, action="owner.revoke", target=owner.email)
    await session.commit()
    return _owner_out(owner)


@router.post("/owners/{ref}/token")
async def new_owner_token(ref: str, session: SessionDep) -> OwnerToken:
    """A new token for an owner (to hand over out of band); the old one stops working."""
    owner = await owners.owner_by_ref(session, ref)
    token = await owners.issue_new_token(session, owner=owner)
    record_action(session, actor=ADMIN_ACTOR, action="owner.new_token", target=owner.email)
    await session.commit()
    return OwnerToken(owner_id=owner.id, token=token)


@router.post("/invites", status_code=http_status.HTTP_201_CREATED)
async def create_invite(body: InviteIn, request: Request, session: SessionDep) -> InviteOut:
    settings: Settings = request.app.state.settings
    invite, code = await owners.create_invite(session, email=body.email)
    record_action(session, actor=ADMIN_ACTOR, action="invite.create", target=invite.email)
    await session.commit()
    return InviteOut(
        email=invite.email,
        code=code,
        expires_at=invite.created_at + timedelta(days=settings.invite_days),
    )


@router.get("/audit")
async def audit_log(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> list[OperatorActionOut]:
    """Operator actions, newest first; page back with `before_id` = the last id of a page."""
    return [
        OperatorActionOut.model_validate(entry, from_attributes=True)
        for entry in await recent_actions(session, limit=limit, before_id=before_id)
    ]


@router.get("/audit.csv", response_class=StreamingResponse)
async def audit_log_csv(request: Request) -> StreamingResponse:
    """The whole audit log as CSV, oldest first."""
    return actions_csv_response(request.app.state.sessionmaker)
