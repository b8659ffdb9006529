"""Every work function the battle path (and a chat's regeneration) hands to `Transactions.write`
is safe to run twice: a transaction shared with a failing write is rolled back and each of its
writes runs again alone, so the second run must stand as if the first had never been."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from arena.battles import creation, turns
from arena.chats import service as chats
from arena.config import Settings
from arena.db import Transactions, make_sync_engine
from arena.models import (
    Battle,
    BattleStatus,
    Chat,
    ChatFeedback,
    ChatMessage,
    Feedback,
    Message,
    Model,
    Side,
)
from arena.registry import service as registry
from arena.registry.keys import KeyRing
from arena.upstream.client import Answer, Failed
from arena.visitors import Visitor
from tests.conftest import run_db
from tests.test_transactions import transactions_on

T = TypeVar("T")
VISITOR = Visitor(session_hash="s" * 64, ip_hash="i" * 64)
WORKER = "worker-under-test"


class _Runs:
    """`work`, counting its runs (the test's own wrapper)."""

    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        self.count = 0

    def __call__(self, connection: Connection) -> Any:
        self.count += 1
        return self.work(connection)


async def _beside_a_failure(transactions: Transactions, work: Callable[[Connection], T]) -> T:
    """Run `work` in a transaction shared with a write that fails: it runs twice."""
    entered, release = threading.Event(), threading.Event()

    def hold(connection: Connection) -> None:
        entered.set()
        release.wait(10)

    def fails(connection: Connection) -> None:
        raise RuntimeError("this write fails, and with it the transaction it shares")

    held = asyncio.create_task(transactions.write(hold))
    assert await asyncio.to_thread(entered.wait, 10)
    runs = _Runs(work)
    tested = asyncio.create_task(transactions.write(runs))
    failing = asyncio.create_task(transactions.write(fails))
    await asyncio.sleep(0)  # both are queued behind `hold`, to share one transaction
    release.set()
    await held
    with pytest.raises(RuntimeError):
        await failing
    result = await tested
    assert runs.count == 2, "the work was meant to run in the failed batch and again alone"
    return result


async def _claimed_battle(
    transactions: Transactions, pair: creation.DrawnPair, prompt: str, settings: Settings
) -> tuple[str, turns.ClaimedTurn]:
    """A new battle whose first turn is claimed, each step run once."""
    battle_id = await transactions.write(
        lambda c: creation.create_battle(
            c, pair=pair, prompt=prompt, visitor=VISITOR, settings=settings
        )
    )
    claimed = await transactions.write(
        lambda c: turns.claim_turn(c, battle_id=battle_id, visitor=VISITOR, worker=WORKER)
    )
    assert claimed is not None
    return battle_id, claimed


def _seed(settings: Settings) -> None:
    keys = KeyRing.from_settings(settings)

    async def add(session: AsyncSession) -> None:
        for name in ("alpha", "beta"):
            new = registry.NewModel(name=name, base_url="http://127.0.0.1:9/v1", upstream_model="m")
            await registry.add_model(session, new=new, keys=keys)

    run_db(settings, add)


def _count(settings: Settings, statement: Any) -> Any:
    engine = make_sync_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(statement).scalar_one()
    finally:
        engine.dispose()


def _messages(settings: Settings, battle_id: str, turn: int) -> int:
    return _count(
        settings,
        select(func.count())
        .select_from(Message)
        .where(Message.battle_id == battle_id, Message.turn == turn),
    )


def _status(settings: Settings, battle_id: str) -> BattleStatus:
    return _count(settings, select(Battle.status).where(Battle.id == battle_id))


def test_every_battle_work_function_stands_after_running_twice(settings: Settings) -> None:
    _seed(settings)
    keys = KeyRing.from_settings(settings)

    async def scenario() -> tuple[str, str]:
        async with transactions_on(settings.database_url) as transactions:
            pair = await transactions.read(
                lambda c: creation.draw_battle_pair(c, prompt="Twice?", settings=settings)
            )
            battle_id = await _beside_a_failure(
                transactions,
                lambda c: creation.create_battle(
                    c, pair=pair, prompt="Twice?", visitor=VISITOR, settings=settings
                ),
            )
            assert _count(settings, select(func.count()).select_from(Battle)) == 1
            assert _messages(settings, battle_id, 1) == 1

            claimed = await _beside_a_failure(
                transactions,
                lambda c: turns.claim_turn(c, battle_id=battle_id, visitor=VISITOR, worker=WORKER),
            )
            assert claimed is not None and claimed.turn == 1
            assert _status(settings, battle_id) == BattleStatus.streaming

            plan = turns.plan_turn(claimed, keys=keys)
            answers = {side: Answer(text=f"answer {side.value}") for side in (Side.a, Side.b)}
            ok = await _beside_a_failure(
                transactions,
                lambda c: turns.finish_turn(c, plan=plan, answers=answers, identity_aliases={}),
            )
            assert ok and _status(settings, battle_id) == BattleStatus.ready
            assert _messages(settings, battle_id, 1) == 3  # the prompt and one answer a side

            turn = await _beside_a_failure(
                transactions,
                lambda c: turns.add_turn(
                    c, battle_id=battle_id, prompt="Again?", visitor=VISITOR, settings=settings
                ),
            )
            assert turn == 2 and _messages(settings, battle_id, 2) == 1
            assert _status(settings, battle_id) == BattleStatus.pending

            second = turns.plan_turn(
                turns.ClaimedTurn(
                    battle_id, 2, claimed.model_a_id, claimed.model_b_id, claimed.endpoints, []
                ),
                keys=keys,
            )
            assert await _beside_a_failure(
                transactions,
                lambda c: turns.claim_planned_turn(c, plan=second, visitor=VISITOR, worker=WORKER),
            )
            interrupted = await _beside_a_failure(
                transactions, lambda c: turns.fail_interrupted_turns(c, worker=WORKER)
            )
            assert interrupted == 1 and _messages(settings, battle_id, 2) == 3
            assert _status(settings, battle_id) == BattleStatus.failed

            # A turn that cannot run (its key unreadable) is abandoned.
            other, other_claim = await _claimed_battle(transactions, pair, "Abandon?", settings)
            await _beside_a_failure(
                transactions, lambda c: turns.abandon_turn(c, claimed=other_claim)
            )
            assert _status(settings, other) == BattleStatus.failed
            return battle_id, other

    asyncio.run(scenario())
    failures = _count(settings, select(func.max(Model.consecutive_failures)))
    assert failures == 0  # one answered turn reset them once; nothing counted a failure twice


def test_a_failed_answer_is_counted_once_though_its_turn_ran_twice(settings: Settings) -> None:
    _seed(settings)
    keys = KeyRing.from_settings(settings)

    async def scenario() -> None:
        async with transactions_on(settings.database_url) as transactions:
            pair = await transactions.read(
                lambda c: creation.draw_battle_pair(c, prompt="Fail once", settings=settings)
            )
            _battle_id, claimed = await _claimed_battle(transactions, pair, "Fail once", settings)
            plan = turns.plan_turn(claimed, keys=keys)
            answers = {
                Side.a: Answer(text="fine"),
                Side.b: Answer(failure=Failed("timeout", "no first token")),
            }
            ok = await _beside_a_failure(
                transactions,
                lambda c: turns.finish_turn(c, plan=plan, answers=answers, identity_aliases={}),
            )
            assert not ok

    asyncio.run(scenario())
    counts = _count(settings, select(func.sum(Model.consecutive_failures)))
    assert counts == 1


def test_a_chat_regeneration_stands_after_running_twice(settings: Settings) -> None:
    _seed(settings)
    keys = KeyRing.from_settings(settings)

    async def scenario() -> str:
        async with transactions_on(settings.database_url) as transactions:
            model_id = await transactions.read(
                lambda c: chats.choose_model(
                    c, name="alpha", prompt="Again?", settings=settings, with_images=False
                )
            )
            chat_id = await transactions.write(
                lambda c: chats.create_chat(c, model_id=model_id, prompt="Again?", visitor=VISITOR)
            )
            claimed = await transactions.write(
                lambda c: chats.claim_turn(c, chat_id=chat_id, visitor=VISITOR, worker=WORKER)
            )
            assert claimed is not None
            plan = chats.plan_turn(claimed, keys=keys)
            await transactions.write(
                lambda c: chats.finish_turn(c, plan=plan, answer=Answer(text="first answer"))
            )
            await transactions.write(
                lambda c: chats.record_feedback(
                    c, chat_id=chat_id, turn=1, rating=Feedback.up, visitor=VISITOR
                )
            )
            regenerations = await _beside_a_failure(
                transactions,
                lambda c: chats.regenerate_turn(
                    c, chat_id=chat_id, visitor=VISITOR, settings=settings
                ),
            )
            assert regenerations == 1
            return chat_id

    chat_id = asyncio.run(scenario())
    assert _count(settings, select(Chat.regenerations).where(Chat.id == chat_id)) == 1
    assert _count(settings, select(Chat.status).where(Chat.id == chat_id)) == BattleStatus.pending
    remaining = select(func.count()).select_from(ChatMessage).where(ChatMessage.chat_id == chat_id)
    assert _count(settings, remaining) == 1  # the prompt; the answer is gone
    thumbs = select(func.count()).select_from(ChatFeedback).where(ChatFeedback.chat_id == chat_id)
    assert _count(settings, thumbs) == 0
