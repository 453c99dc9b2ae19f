"""Running the CLI in tests: in-process with click's runner, against the test's own database."""

from __future__ import annotations

from click.testing import CliRunner, Result

from flywheel_sync.cli import cli


def run(*args: str, database_url: str | None = None, env: dict | None = None) -> Result:
    environment = {"FLYWHEEL_DATABASE_URL": database_url} if database_url else {"FLYWHEEL_DATABASE_URL": ""}
    environment.update(env or {})
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=True)


def error_line(result: Result) -> str:
    """The one line a user sees for a known failure; fails the test on a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]
