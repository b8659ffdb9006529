"""The `arena` command's entry point: rating a battles file starts without the web stack."""

from __future__ import annotations

import sys


def _rates_a_file(args: list[str]) -> bool:
    # `arena ratings compute --battles FILE` reads neither the settings nor the database, so it
    # needs none of the server's modules (about a second and a half of imports).
    return args[:2] == ["ratings", "compute"] and any(
        a == "--battles" or a.startswith("--battles=") for a in args[2:]
    )


def main() -> None:
    args = sys.argv[1:]
    if _rates_a_file(args):
        from arena.ratings_cli import ratings_app

        ratings_app(args=args[1:], prog_name="arena ratings")
        return
    from arena.cli import app

    app()


if __name__ == "__main__":
    main()
