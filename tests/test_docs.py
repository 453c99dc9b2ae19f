"""The docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

from flywheel_sync.cli.docgen import commands_page

ROOT = Path(__file__).resolve().parents[1]


def test_commands_page_equals_the_commands_help():
    assert (ROOT / "docs" / "commands.md").read_text() == commands_page(), "run `make docs` and commit docs/commands.md"


def test_readme_starts_with_the_two_commands():
    top = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make demo" in top and "make test" in top
