"""The package's checks hold under `python -O` too: none of them is an assert statement."""

from __future__ import annotations

import ast
from pathlib import Path

import arena


def test_the_package_has_no_assert_statements() -> None:
    package = Path(arena.__file__).parent
    found = [
        f"{path.relative_to(package.parent)}:{node.lineno}"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
    ]
    assert not found, f"`python -O` drops these checks; raise a real error instead: {found}"
