"""create_app(): the FastAPI application, its routers and what lives for the app's lifetime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp

from arena import metrics
from arena.api_docs import install_api_docs
from arena.battles import turns
from arena.battles.fast_lane import BattleFastLane
from arena.battles.integrity_admin_routes import router as integrity_admin_router
from arena.battles.integrity_routes import router as integrity_router
from arena.battles.live import LiveTurns
from arena.battles.lookalikes import folding_table
from arena.battles.planned import PlannedTurns
from arena.battles.relay import FinishTurn, TurnRunner
from arena.battles.rigging import RiggingScanner
from arena.battles.routes import me_router, shared_router
from arena.battles.routes import router as battles_router
from arena.body_limit import BodyLimit
from arena.chats import service as chats
from arena.chats.relay import ChatRunner, FinishChatTurn
from arena.chats.routes import router as chats_router
from arena.collector import serving_collector
from arena.config import Settings
from arena.consent import release_notice
from arena.console.routes import router as console_router
from arena.db import Transactions, make_async_engine, make_sessionmaker, write_session
from arena.error_responses import ERROR_RESPONSES
from arena.errors import install_error_handlers
from arena.images.decoding import images_body_bytes
from arena.images.routes import router as images_router
from arena.judge.worker import JudgeWorker
from arena.leaderboard.background import RecomputeScheduler
from arena.leaderboard.cache import PageCache
from arena.leaderboard.routes import router as leaderboard_router
from arena.log_format import RequestIds, install_request_id_records
from arena.log_writing import LogWritingThread
from arena.models import Side
from arena.moderation import Moderator, RecordRefusal, Stage, record_refusal
from arena.pages import install_security_headers
from arena.pages import router as pages_router
from arena.ratelimit import RateLimiter
from arena.ratings.style_features import cl100k_base
from arena.registry.address_guard import guarded_chat
from arena.registry.admin_routes import router as admin_router
from arena.registry.health import HealthMonitor, trip_breakers
from arena.registry.keys import KeyRing
from arena.registry.routes import pages_router as owner_pages_router
from arena.registry.routes import router as owners_router
from arena.registry.webhooks import WebhookSender
from arena.upstream.client import Answer, Limits
from arena.upstream.http import UpstreamClient
from arena.upstream.proxies import proxy_routes_from_environment
from arena.upstream.trust import trusted_context
from arena.workers import Workers

log = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent


def static_dir() -> Path:
    # A checkout keeps static/ beside the package; a wheel carries it inside.
    for candidate in (_PACKAGE_DIR.parent / "static", _PACKAGE_DIR / "static"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the static/ folder is missing from this installation")


def upstream_limits(settings: Settings) -> Limits:
    return Limits(
        connect=settings.connect_timeout,
        first_token=settings.first_token_timeout,
        idle=settings.idle_timeout,
        total=settings.total_timeout,
        max_answer_bytes=settings.max_answer_bytes,
    )


def _finish_turn(
    transactions: Transactions,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    moderator: Moderator,
) -> FinishTurn:
    async def finish(plan: turns.TurnPlan, answers: dict[Side, Answer]) -> turns.TurnEnd:
        withheld = None
        style = None
        if all(answer.ok for answer in answers.values()):
            # A battle a side failed is unvotable already: only a votable one is moderated.
            verdict = await moderator.check_answers([answers[Side.a].text, answers[Side.b].text])
            withheld = verdict.reason
            # Tokenising the answers takes milliseconds: in a thread, not on the event loop, and
            # not inside the write transaction (on SQLite it holds the database's write lock).
            style = await asyncio.to_thread(turns.turn_style, plan, answers)
        ok = await transactions.write(
            lambda connection: turns.finish_turn(
                connection,
                plan=plan,
                answers=answers,
                identity_aliases=settings.identity_aliases,
                withheld=withheld,
                style=style,
            )
        )
        if withheld is not None:
            metrics.moderation_refused("answer", withheld)
        metrics.turn_over(
            ok,
            (
                metrics.SideTimes(
                    side_plan.name,
                    answer.first_token_ms,
                    answer.duration_ms,
                    answer.failure.kind if answer.failure is not None else None,
                )
                for side_plan, answer in ((plan.a, answers[Side.a]), (plan.b, answers[Side.b]))
            ),
            withheld=withheld is not None,
        )
        if withheld is not None:
            return turns.TurnEnd.withheld
        if not ok:
            # The circuit breaker: a model failing answer after answer stops being drawn. Only
            # after a failure (a turn both answered has just set both counts to 0), and in a
            # transaction of its own: should the worker die in between, the health monitor's
            # sweep pauses the model instead.
            async with write_session(sessionmaker) as session:
                await trip_breakers(
                    session,
                    threshold=settings.circuit_breaker_failures,
                    model_ids=(plan.a.model_id, plan.b.model_id),
                )
            return turns.TurnEnd.failed
        return turns.TurnEnd.ready

    return finish


def _refusal_recorder(transactions: Transactions) -> RecordRefusal:
    async def record(stage: Stage, reason: str) -> None:
        await transactions.write(
            lambda connection: record_refusal(connection, stage=stage, reason=reason)
        )

    return record


def _finish_chat_turn(
    transactions: Transactions,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    moderator: Moderator,
) -> FinishChatTurn:
    async def finish(plan: chats.ChatPlan, answer: Answer) -> turns.TurnEnd:
        withheld = None
        if answer.ok:
            # As a battle's answers: a failed one is shown as failed, so only a whole one is
            # moderated (and when the endpoint is down, ARENA_MODERATION_WHEN_DOWN decides).
            withheld = (await moderator.check_answers([answer.text])).reason
        ended = await transactions.write(
            lambda connection: chats.finish_turn(
                connection, plan=plan, answer=answer, withheld=withheld
            )
        )
        if withheld is not None:
            metrics.moderation_refused("answer", withheld)
        if ended is turns.TurnEnd.failed:
            # The circuit breaker, as after a battle's failed turn: a model failing in chats
            # is paused too (and should the worker die first, the health monitor's sweep does).
            async with write_session(sessionmaker) as session:
                await trip_breakers(
                    session, threshold=settings.circuit_breaker_failures, model_ids=(plan.model_id,)
                )
        return ended

    return finish


def _settle_gone_worker(connection: Connection, gone: str) -> int:
    """End the battle and chat turns a gone worker was streaming; how many."""
    return turns.fail_interrupted_turns(connection, worker=gone) + chats.fail_interrupted_turns(
        connection, worker=gone
    )


class _ArenaApp(FastAPI):
    def __init__(
        self,
        *,
        max_body_bytes: int,
        larger_posts: dict[str, int],
        request_ids: bool,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.max_body_bytes = max_body_bytes
        self.larger_posts = larger_posts
        self.request_ids = request_ids

    def build_middleware_stack(self) -> ASGIApp:
        # The fast lane outside every middleware (arena/battles/fast_lane.py), and outside it the
        # bound on request bodies, which the fast lane reads too; outermost, with JSON logs, the
        # request id, so that every answer (a 413 too) carries it.
        fast_lane = BattleFastLane(super().build_middleware_stack(), self)
        bounded = BodyLimit(fast_lane, self.max_body_bytes, self.larger_posts)
        return RequestIds(bounded) if self.request_ids else bounded


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled client for every upstream call: keep-alive saves a handshake per battle.
        # First of all: an unusable CA bundle or proxy variable stops the worker before it
        # starts anything, with the variable's name.
        client = UpstreamClient(
            tls=trusted_context(settings.ca_bundle),
            proxies=proxy_routes_from_environment(),
            proxy_resolves_names=settings.proxy_resolves_names,
        )
        engine = make_async_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        sessionmaker = make_sessionmaker(engine)
        app.state.settings = settings
        metrics.configure(settings)
        if settings.log_format == "json":
            install_request_id_records()
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker
        transactions = Transactions(engine)
        app.state.transactions = transactions
        # Before the first request: the turns of workers gone mid-stream are settled.
        workers = Workers.for_engine(engine, transactions)
        await workers.start(_settle_gone_worker)
        app.state.workers = workers
        app.state.secret_key = settings.resolved_secret_key()
        app.state.keys = KeyRing.from_settings(settings)
        app.state.release_notice = release_notice(settings)
        # Built here, not in the first battle's write transaction: a few tenths of a second.
        await asyncio.to_thread(folding_table)
        # The same for the encoding that counts answer tokens (and a missing one stops here).
        await asyncio.to_thread(cl100k_base)
        app.state.http = client
        app.state.planned_turns = PlannedTurns()
        moderator = Moderator.from_settings(settings, client, _refusal_recorder(transactions))
        app.state.moderator = moderator
        app.state.live_turns = LiveTurns()
        app.state.turn_runner = TurnRunner(
            client,
            upstream_limits(settings),
            _finish_turn(transactions, sessionmaker, settings, moderator),
            chat=guarded_chat(allow_private=settings.allow_private_endpoints),
        )
        app.state.chat_runner = ChatRunner(
            client,
            upstream_limits(settings),
            _finish_chat_turn(transactions, sessionmaker, settings, moderator),
            chat=guarded_chat(allow_private=settings.allow_private_endpoints),
        )
        webhook_sender = WebhookSender(settings, sessionmaker, client, app.state.keys).start()
        health = HealthMonitor(
            settings=settings, sessionmaker=sessionmaker, client=client, keys=app.state.keys
        ).start()
        app.state.rate_limiter = RateLimiter.from_settings(settings)
        rigging_scanner = RiggingScanner(settings, sessionmaker)
        rigging_scanner.start()
        app.state.leaderboard_cache = PageCache()
        recompute = RecomputeScheduler(settings, engine)
        await recompute.start()
        app.state.recompute = recompute
        judge_worker = JudgeWorker(settings, sessionmaker, client, app.state.keys).start()
        queues = metrics.QueueSampler(
            {"planned_turns": app.state.planned_turns.__len__, "writes": transactions.waiting}
        ).start()
        # Two lines a battle: written by a thread, they cost the event loop only their record.
        access_log = LogWritingThread(logging.getLogger("uvicorn.access")).start()
        try:
            with serving_collector():
                yield
        finally:
            await queues.stop()
            await judge_worker.stop()
            await webhook_sender.stop()
            await health.stop()
            await recompute.stop()
            await rigging_scanner.stop()
            cut_short = await app.state.turn_runner.drain(timeout=10)
            cut_short += await app.state.chat_runner.drain(timeout=10)
            app.state.planned_turns.close()
            await workers.stop(turns_cut_short=cut_short > 0)
            await asyncio.to_thread(transactions.close)
            await app.state.rate_limiter.close()
            await client.aclose()
            await engine.dispose()
            await asyncio.to_thread(access_log.stop)
            metrics.worker_exited()

    app = _ArenaApp(
        max_body_bytes=settings.max_body_bytes,
        # A new battle's prompt, and a chat's every prompt, may carry images in base64
        # (arena/images/).
        larger_posts=dict.fromkeys(
            ("/api/battles", "/api/chats", "/api/chats/{chat_id}/turns"),
            images_body_bytes(settings),
        ),
        request_ids=settings.log_format == "json",
        title="arena",
        summary="Anonymous battles between chat models, votes, ratings and open data.",
        version="0.1.0",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_security_headers(app)
    app.include_router(battles_router)
    app.include_router(me_router)
    app.include_router(chats_router)
    app.include_router(shared_router)
    app.include_router(integrity_router)
    app.include_router(integrity_admin_router)
    app.include_router(owners_router)
    app.include_router(admin_router)
    app.include_router(owner_pages_router)
    app.include_router(pages_router)
    app.include_router(leaderboard_router)
    app.include_router(images_router)
    app.include_router(metrics.router)
    app.include_router(console_router)
    install_api_docs(app)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check: the database does not answer")
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app
