"""Every path that stores an endpoint (the owner API and the operator's CLI alike) refuses an
API key or a base URL that would put a line break into a request head."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from arena.config import Settings
from arena.errors import InvalidInput
from arena.registry import service as registry
from arena.registry.keys import KeyRing
from tests.conftest import run_db


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_key", "sk-good\r\nX-Injected: 1"),
        ("api_key", "sk good"),
        ("api_key", "sk-\x00"),
        ("base_url", "http://127.0.0.1:9/v1\r\nX-Injected: 1"),
        ("base_url", "http://127.0.0.1:9/v1 x"),
        ("base_url", "http://127.0.0.1:9/v1\x85"),
    ],
)
def test_the_operators_path_refuses_header_breaking_values(
    settings: Settings, field: str, value: str
) -> None:
    values = {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-good", field: value}
    new = registry.NewModel(name="clean", upstream_model="m", **values)

    async def add(session: AsyncSession) -> None:
        await registry.add_model(session, new=new, keys=KeyRing.from_settings(settings))

    with pytest.raises(InvalidInput) as refused:
        run_db(settings, add)
    assert refused.value.message.startswith(f"{field}:")
    assert value not in refused.value.message or field == "base_url"
