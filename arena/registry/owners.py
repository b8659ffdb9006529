"""Owner accounts: sign-up (open, or by operator invite), tokens shown once, revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from arena.errors import InviteNotValid, NameTaken, NotAllowed, NotFound
from arena.models import Model, Owner, OwnerInvite, utcnow
from arena.registry.auth import hash_token, new_invite_code, new_owner_token


@dataclass(frozen=True)
class OwnerSummary:
    owner: Owner
    models: int


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def _use_invite(
    session: AsyncSession, *, email: str, code: str, invite_days: int
) -> OwnerInvite:
    invite = await session.scalar(
        select(OwnerInvite).where(OwnerInvite.code_hash == hash_token(code))
    )
    if (
        invite is None
        or invite.email != email
        or invite.used_at is not None
        or utcnow() - invite.created_at > timedelta(days=invite_days)
    ):
        raise InviteNotValid()
    # Conditional update: two sign-ups racing with one code, exactly one wins.
    used = await session.execute(
        update(OwnerInvite)
        .where(OwnerInvite.id == invite.id, OwnerInvite.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise InviteNotValid()
    return invite


async def create_owner(
    session: AsyncSession,
    *,
    name: str,
    email: str,
    invite_code: str | None,
    open_signup: bool,
    invite_days: int,
) -> tuple[Owner, str]:
    """A new owner and its token: the only time the token exists outside the caller's hands."""
    email = normalise_email(email)
    if not open_signup and not invite_code:
        raise NotAllowed(
            "invite_code: sign-up on this arena is by invitation; ask the operator for an "
            "invite code for your email and send it as invite_code"
        )
    if await session.scalar(select(Owner.id).where(Owner.email == email)) is not None:
        raise NameTaken(
            "email: an owner with this email exists already; use its token, or ask the "
            "operator for a new one"
        )
    if invite_code:
        await _use_invite(session, email=email, code=invite_code, invite_days=invite_days)
    token = new_owner_token()
    owner = Owner(name=name.strip(), email=email, token_hash=hash_token(token), created_at=utcnow())
    session.add(owner)
    try:
        await session.flush()
    except IntegrityError:
        raise NameTaken("email: an owner with this email was created just now") from None
    return owner, token


async def create_invite(session: AsyncSession, *, email: str) -> tuple[OwnerInvite, str]:
    code = new_invite_code()
    invite = OwnerInvite(
        email=normalise_email(email), code_hash=hash_token(code), created_at=utcnow()
    )
    session.add(invite)
    await session.flush()
    return invite, code


async def owner_by_ref(session: AsyncSession, ref: str) -> Owner:
    """An owner by numeric id or by email."""
    ref = ref.strip()
    if ref.isdigit():
        owner = await session.get(Owner, int(ref))
    else:
        owner = await session.scalar(select(Owner).where(Owner.email == normalise_email(ref)))
    if owner is None:
        raise NotFound(f"No owner {ref!r}; `arena owners list` shows ids and emails.")
    return owner


async def list_owners(session: AsyncSession) -> list[OwnerSummary]:
    counts = (
        select(Model.owner_id, func.count(Model.id).label("n")).group_by(Model.owner_id).subquery()
    )
    rows = await session.execute(
        select(Owner, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.owner_id == Owner.id)
        .order_by(Owner.id)
    )
    return [OwnerSummary(owner, int(n)) for owner, n in rows.all()]


async def revoke_owner(session: AsyncSession, *, owner: Owner) -> Owner:
    """The token stops working at once; the owner's models keep their status."""
    if owner.revoked_at is None:
        owner.revoked_at = utcnow()
        await session.flush()
    return owner


async def issue_new_token(session: AsyncSession, *, owner: Owner) -> str:
    """Replace the owner's token (the old one stops working) and lift a revocation."""
    token = new_owner_token()
    owner.token_hash = hash_token(token)
    owner.revoked_at = None
    await session.flush()
    return token
