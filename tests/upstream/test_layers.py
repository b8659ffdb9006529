"""The upstream layer talks to endpoints and serves the demo; it knows nothing of the database
or the registry above it (the registry imports it, never the other way round)."""

from __future__ import annotations

import subprocess
import sys


def test_the_upstream_package_imports_nothing_from_the_layers_above() -> None:
    code = (
        "import sys, arena.upstream.client, arena.upstream.http, arena.upstream.demo\n"
        "above = ('arena.db', 'arena.models', 'arena.registry', 'arena.battles', 'sqlalchemy')\n"
        "print(','.join(m for m in above if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"arena.upstream pulls in {out.stdout.strip()}"
