"""The judged categories on the leaderboard: absent from the picker with a sentence saying why
until a judge has labelled counted battles, then offered with the judge named; in a browser too;
and a judge slow to answer holds up no battle and no vote."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.judge.endpoint import set_demo_judge
from arena.models import JudgeLabel
from tests.browser import BrowserPage
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream
from tests.judge.conftest import SECRET_KEY
from tests.leaderboard.conftest import add_models, recompute, seed_votes, simulated_votes
from tests.sse import read_stream, start_battle

JUDGED = ("Hard Prompts", "Math", "Instruction Following", "Creative Writing")
PROMPTS = (
    "[hard] [math] Prove that the product of two odd numbers is odd.",
    "[hard] [if] Name three rivers in exactly three bullet points.",
    "[creative] Write a short poem about autumn rain.",
    "[refusal] Hello there, how are you today?",
)
STRENGTHS = {"alpha-large": 1.0, "beta-chat": 0.4, "gamma-7b": 0.0, "delta-mini": -0.5}


def _picker(html: str) -> str:
    start = html.index('aria-label="Category"')
    return html[start : html.index("</nav>", start)]


def _quiet(arena_factory: Callable[..., Arena], **judge: Any) -> Arena:
    return arena_factory(
        recompute_every_votes=10**9,
        recompute_every_seconds=3600.0,
        secret_key=SECRET_KEY,
        judge_requests_per_minute=60_000.0,
        **judge,
    )


def _rated(arena: Arena) -> None:
    add_models(arena)
    seed_votes(
        arena.settings.database_url, simulated_votes(STRENGTHS, 200, prompts=PROMPTS, seed=3)
    )


def test_without_a_judge_the_picker_says_why_the_judged_categories_are_missing(
    arena_factory: Callable[..., Arena],
) -> None:
    arena = _quiet(arena_factory)
    _rated(arena)
    assert recompute(arena).ran
    with arena.client() as client:
        page = client.get("/leaderboard")
        assert page.status_code == 200
        picker = _picker(page.text)
        for label in JUDGED:
            assert label not in picker
        assert "this arena has none" in page.text and "arena judge set" in page.text
        missing = client.get("/leaderboard", params={"category": "hard"})
        assert missing.status_code == 422 and "has no table" in missing.text


def test_labelled_battles_give_the_judged_tables_naming_their_judge(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = _quiet(arena_factory, judge_base_url=fake_upstream.base_url, judge_model="judge")
    with arena.client() as client:
        # A judge, but nothing labelled yet.
        page = client.get("/leaderboard").text
        assert "not offered yet" in page and "(judge)" in page
        assert "Hard Prompts" not in _picker(page)
    add_models(arena)
    votes = simulated_votes(STRENGTHS, 60, prompts=PROMPTS, seed=3)
    seed_votes(arena.settings.database_url, votes)

    async def labelled(session: AsyncSession) -> int:
        found = await session.scalars(
            select(JudgeLabel.battle_id).where(JudgeLabel.labelled_at.is_not(None))
        )
        return len(list(found))

    # The arena's own labeller, in the background.
    deadline = time.monotonic() + 60
    while arena.db(labelled) < 60:
        assert time.monotonic() < deadline, "the battles were never all labelled"
        time.sleep(0.5)
    assert recompute(arena).ran
    with arena.client() as client:
        deadline = time.monotonic() + 10
        while "Hard Prompts" not in _picker(page := client.get("/leaderboard").text):
            assert time.monotonic() < deadline, "the judged categories never appeared"
            time.sleep(0.3)
        assert "not offered" not in page
        hard = client.get("/leaderboard", params={"category": "hard"})
        assert hard.status_code == 200
        assert "put in this category by the judge judge / prompt v1: 30 battles" in hard.text
        board = client.get("/api/leaderboard", params={"category": "math"}).json()
        assert board["category"] == "math" and board["models"]
        assert board["params"]["judged_by"] == {"judge / prompt v1": 15}
        assert "hard" in board["categories"]
        download = client.get("/leaderboard.csv", params={"category": "hard"})
        assert '"judged_by":{"judge / prompt v1":30}' in download.headers["X-Arena-Params"]
        # The judge's refusal labels give the "exclude refusals" view: a quarter of the prompts.
        plain = client.get("/api/leaderboard").json()
        assert "refusals" in plain["exclusions"]
        without = client.get("/api/leaderboard", params={"exclude": "refusals"})
        assert without.status_code == 200, without.text
        assert without.json()["n_battles"] == plain["n_battles"] - 15


def test_the_demo_judge_is_named_as_one(arena_factory: Callable[..., Arena]) -> None:
    arena = _quiet(arena_factory)
    _rated(arena)

    async def demo(session: AsyncSession) -> bool:
        return await set_demo_judge(
            session, base_url="http://127.0.0.1:9/v1", settings=arena.settings
        )

    assert arena.db(demo)
    with arena.client() as client:
        page = client.get("/leaderboard").text
        assert "demo-judge, the demo judge: keyword rules, not an LLM" in page


def test_a_slow_judge_holds_up_no_battle_and_no_vote(
    arena_factory: Callable[..., Arena], fake_upstream: FakeUpstream
) -> None:
    arena = _quiet(
        arena_factory, judge_base_url=fake_upstream.base_url, judge_model="judge:8",
        judge_timeout=30.0,
    )  # fmt: skip
    arena.add_model("alpha-large", fake_upstream.base_url)
    arena.add_model("beta-chat", fake_upstream.base_url)

    def labelled() -> list[str]:
        async def work(session: AsyncSession) -> list[str]:
            found = await session.scalars(
                select(JudgeLabel.battle_id).where(JudgeLabel.labelled_at.is_not(None))
            )
            return list(found)

        return arena.db(work)

    def battle_and_vote(client: httpx.Client, prompt: str) -> str:
        battle_id = start_battle(client, prompt)
        assert read_stream(client, battle_id).end["status"] == "ready"
        vote = client.post(f"/api/battles/{battle_id}/vote", json={"winner": "model_a"})
        assert vote.status_code == 200, vote.text
        return battle_id

    with arena.client() as client:
        first = battle_and_vote(client, "[math] What is 17 times 23?")
        deadline = time.monotonic() + 15
        while not fake_upstream.requests_for("judge:8"):
            assert time.monotonic() < deadline, "the judge was never asked"
            time.sleep(0.1)
        # The judge is thinking (8 s): battles and votes go on meanwhile.
        second = battle_and_vote(client, "[creative] Write a haiku about snow.")
        assert labelled() == []
        deadline = time.monotonic() + 40
        while set(labelled()) != {first, second}:
            assert time.monotonic() < deadline, "the labels never arrived"
            time.sleep(0.3)


def test_the_picker_sentence_in_a_browser(
    arena_factory: Callable[..., Arena], browser_page: BrowserPage
) -> None:
    arena = _quiet(arena_factory)
    _rated(arena)
    assert recompute(arena).ran
    page = browser_page.page
    page.goto(f"{arena.url}/leaderboard")
    note = page.locator("#judged-categories-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Hard Prompts, Math, Instruction Following and Creative Writing")
    picker = page.get_by_role("navigation", name="Category")
    expect(picker.get_by_role("link", name="All")).to_be_visible()
    expect(picker.get_by_role("link", name="Hard Prompts")).to_have_count(0)
