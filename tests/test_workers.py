"""Workers sharing a database: a turn is settled only when the worker streaming it is gone."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles import turns
from arena.db import Transactions, make_async_engine, make_sessionmaker
from arena.models import Battle, BattleStatus, Model, WorkerInstance
from arena.workers import Workers
from tests.test_db_reconnect import _terminate_other_backends


async def _streaming_battle(session: AsyncSession, worker: str) -> str:
    a = Model(name="alpha", base_url="http://127.0.0.1:9/v1", upstream_model="m")
    b = Model(name="beta", base_url="http://127.0.0.1:9/v1", upstream_model="m")
    session.add_all([a, b])
    await session.flush()
    battle = Battle(
        id=f"battle-of-{worker}",
        model_a_id=a.id,
        model_b_id=b.id,
        session_hash="s",
        status=BattleStatus.streaming,
        streamed_by=worker,
    )
    session.add(battle)
    return battle.id


async def _status(session: AsyncSession, battle_id: str) -> BattleStatus:
    battle = await session.get(Battle, battle_id)
    assert battle is not None
    await session.refresh(battle)
    return battle.status


def _settle(connection: Connection, worker: str) -> int:
    return turns.fail_interrupted_turns(connection, worker=worker)


def test_only_the_turns_of_a_gone_worker_are_settled(database_url: str) -> None:
    _only_the_turns_of_a_gone_worker_are_settled(database_url, "stopped")


def test_a_worker_whose_lock_connection_broke_is_not_taken_for_gone(
    empty_postgres_database: str,
) -> None:
    """Only PostgreSQL's locks live on a connection that can break (SQLite's are the file's)."""
    _only_the_turns_of_a_gone_worker_are_settled(empty_postgres_database, "connection")


def _only_the_turns_of_a_gone_worker_are_settled(database_url: str, cut: str) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        sessions = make_sessionmaker(engine)
        transactions = Transactions(engine)
        live = Workers.for_engine(engine, transactions)
        starting: list[Workers] = []
        try:
            await live.start(_settle)
            async with sessions() as session, session.begin():
                battle_id = await _streaming_battle(session, live.id)

            async def start_another() -> BattleStatus:
                other = Workers.for_engine(engine, transactions)
                starting.append(other)
                await other.start(_settle)
                async with sessions() as session:
                    return await _status(session, battle_id)

            assert await start_another() == BattleStatus.streaming
            if cut == "connection":
                # A database restart ends the live worker's lock with its connection; it takes
                # the lock again within a few seconds, and a worker starting then still finds
                # it alive.
                assert await asyncio.to_thread(_terminate_other_backends, database_url) >= 1
                await asyncio.sleep(12)
                assert await start_another() == BattleStatus.streaming
                return
            await live.stop(turns_cut_short=True)  # as if killed: listed, its lock released
            assert await start_another() == BattleStatus.failed
            async with sessions() as session:
                listed = set(await session.scalars(select(WorkerInstance.id)))
                assert live.id not in listed
                messages = await session.execute(
                    text("SELECT side, error FROM message WHERE battle_id = :b ORDER BY side"),
                    {"b": battle_id},
                )
                assert [tuple(row) for row in messages] == [
                    ("a", turns.INTERRUPTED),
                    ("b", turns.INTERRUPTED),
                ]
        finally:
            for other in starting:
                await other.stop(turns_cut_short=False)
            await live.stop(turns_cut_short=False)
            await asyncio.to_thread(transactions.close)
            await engine.dispose()

    asyncio.run(run())
