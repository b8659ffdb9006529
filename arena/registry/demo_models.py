"""The demo models in the registry: started and registered by `arena serve --demo`."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from arena.config import Settings
from arena.db import in_one_transaction
from arena.errors import DemoUnavailable
from arena.judge.endpoint import set_demo_judge
from arena.models import Model
from arena.registry import service as registry
from arena.registry.keys import KeyRing
from arena.upstream.demo import (
    DEMO_MODELS,
    DEMO_ORGANIZATION,
    DemoServer,
    demo_already_serving,
    demo_base_url,
)

log = logging.getLogger(__name__)


async def register_demo_models(session: AsyncSession, *, keys: KeyRing, base_url: str) -> list[str]:
    """Register the demo models that are not registered yet; the names of those added.

    A demo model registered earlier on another port is pointed at this one, since only the
    demo server can answer for it; its status (an operator may have paused it) is kept.
    """
    existing = {
        model.name: model
        for model in await session.scalars(
            select(Model).where(Model.name.in_([demo.name for demo in DEMO_MODELS]))
        )
    }
    added: list[str] = []
    for demo in DEMO_MODELS:
        known = existing.get(demo.name)
        if known is not None:
            if known.organization == DEMO_ORGANIZATION and known.base_url != base_url:
                log.info("demo model %s now at %s (was %s)", demo.name, base_url, known.base_url)
                known.base_url = base_url
            if known.organization == DEMO_ORGANIZATION and demo.supports_images:
                known.supports_images = True  # registered before the demo read pictures
            continue
        await registry.add_model(
            session,
            new=registry.NewModel(
                name=demo.name,
                base_url=base_url,
                upstream_model=demo.name,
                organization=DEMO_ORGANIZATION,
                license="Apache-2.0",
                description=demo.description,
                temperature=0.0,
                supports_images=demo.supports_images,
            ),
            keys=keys,
            actor="demo",
        )
        added.append(demo.name)
    await session.flush()
    return added


def start_demo_for_serve(settings: Settings) -> None:
    """Serve the demo endpoints on 127.0.0.1:ARENA_DEMO_PORT (or reuse a demo server already
    there) and make sure their models are registered."""
    port = settings.demo_port
    if not demo_already_serving(port):
        DemoServer(port, settings.demo_seconds_per_word).start()
    keys = KeyRing.from_settings(settings)

    async def register(session: AsyncSession) -> list[str]:
        added = await register_demo_models(session, keys=keys, base_url=demo_base_url(port))
        # The demo judge too, unless the operator named a judge: the judged categories work
        # out of the box, labelled by keyword rules that say they are a demo.
        if await set_demo_judge(session, base_url=demo_base_url(port), settings=settings):
            log.info("the demo judge (keyword rules, not a language model) labels the battles")
        return added

    try:
        added = asyncio.run(in_one_transaction(settings.database_url, register))
    except DBAPIError as exc:
        raise DemoUnavailable(
            "The demo models could not be registered because the database is not ready "
            f"({type(exc.orig).__name__}: {exc.orig}); run `arena db upgrade` first."
        ) from None
    if added:
        log.info("registered the demo models %s", ", ".join(added))
