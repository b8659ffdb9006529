"""Publishing a voted battle at an unguessable address, and taking it back."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from arena.models import Share
from tests.conftest import Arena
from tests.fake_upstream import FakeUpstream, answer_for
from tests.sse import read_stream, start_battle


def _stored_slugs(arena: Arena) -> list[str]:
    async def read(session: AsyncSession) -> list[str]:
        return list(await session.scalars(select(Share.slug)))

    return arena.db(read)


def test_a_voted_battle_is_shared_with_its_names_and_taken_back_by_its_visitor(
    arena: Arena, fake_upstream: FakeUpstream
) -> None:
    arena.add_model("alpha-7b", fake_upstream.base_url, organization="Alpha Labs")
    arena.add_model("beta-13b", fake_upstream.base_url, organization="Beta Inc")
    prompt = "Share-worthy question"
    with arena.client() as visitor, arena.client() as anyone:
        battle_id = start_battle(visitor, prompt)
        assert read_stream(visitor, battle_id).end["status"] == "ready"
        # Before the vote the names are secret, and so the battle cannot be shared.
        early = visitor.post(f"/api/battles/{battle_id}/share")
        assert early.status_code == 409 and "Vote first" in early.json()["detail"]
        assert "alpha" not in early.text and "beta" not in early.text
        assert _stored_slugs(arena) == []
        assert visitor.post(f"/api/battles/{battle_id}/vote", json={"winner": "tie"}).is_success

        assert anyone.post(f"/api/battles/{battle_id}/share").status_code == 403
        shared = visitor.post(f"/api/battles/{battle_id}/share")
        assert shared.status_code == 200, shared.text
        url = shared.json()["url"]
        assert url.startswith(arena.url + "/shared/")
        slug = url.rsplit("/", 1)[1]
        assert len(slug) >= 40 and battle_id not in url
        # Asked again: the same address.
        assert visitor.post(f"/api/battles/{battle_id}/share").json()["url"] == url
        assert visitor.get(f"/api/battles/{battle_id}").json()["share_path"] == f"/shared/{slug}"

        published = anyone.get(f"/api/shared/{slug}")
        assert published.status_code == 200, published.text
        body = published.json()
        assert {body["models"]["model_a"]["name"], body["models"]["model_b"]["name"]} == {
            "alpha-7b",
            "beta-13b",
        }
        assert body["winner"] == "tie" and body["regenerations"] == 0
        assert [(m["side"], m["content"]) for m in body["messages"]] == [
            ("user", prompt),
            ("a", answer_for(prompt)),
            ("b", answer_for(prompt)),
        ]
        # Nothing of the session: no battle id, no hash, no cookie set for the reader.
        assert battle_id not in published.text and "session" not in published.text
        assert "set-cookie" not in published.headers
        page = anyone.get(url)
        assert page.status_code == 200 and "alpha-7b" in page.text and "Alpha Labs" in page.text
        assert battle_id not in page.text and page.headers["cache-control"] == "no-store"

        assert anyone.delete(f"/api/battles/{battle_id}/share").status_code == 403
        assert anyone.get(f"/api/shared/{slug}").status_code == 200
        taken_back = visitor.delete(f"/api/battles/{battle_id}/share")
        assert taken_back.status_code == 204
        gone = anyone.get(f"/api/shared/{slug}")
        assert gone.status_code == 404 and "took it back" in gone.json()["detail"]
        gone_page = anyone.get(url)
        assert gone_page.status_code == 404 and "alpha-7b" not in gone_page.text
        assert visitor.get(f"/api/battles/{battle_id}").json()["share_path"] is None

        # Shared again, it gets a new address: the old one stays dead.
        again = visitor.post(f"/api/battles/{battle_id}/share").json()["url"]
        assert again != url and anyone.get(again).status_code == 200
        assert anyone.get(f"/api/shared/{slug}").status_code == 404
        # Deleted by its visitor, it is not readable any more.
        assert visitor.delete(f"/api/battles/{battle_id}").status_code == 200
        assert anyone.get(again).status_code == 404
        assert anyone.get("/api/shared/not-a-slug").status_code == 404
        assert visitor.post("/api/battles/nope/share").status_code == 404
