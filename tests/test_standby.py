"""On a read-only standby the refresh says so in one line (issue 14), in SQL and in the CLI, instead
of the failure handler's own "cannot execute INSERT in a read-only transaction"."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from flywheel_sync import db, embedded, generate, migrate
from tests.cli import error_line, run

STANDBY_SAYS = "this is a read-only standby: refresh the primary"


@pytest.fixture(scope="module")
def standby_url(tmp_path_factory) -> Iterator[str]:
    """A standby of a primary of this module's own (both embedded, on free ports), migrated and refreshed once."""
    folder = tmp_path_factory.mktemp("replication")
    primary = embedded.start_postgres(folder / "primary")
    try:
        engine = db.create_engine(primary.url, poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            generate.create_reference_schema(connection)
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(sa.text("select flywheel.refresh()"))
        engine.dispose()
        standby = embedded.start_postgres_standby(folder / "standby", primary.url)
        try:
            yield standby.url
        finally:
            embedded.stop(folder / "standby")
    finally:
        embedded.stop(folder / "primary")


def test_refresh_on_a_standby_says_to_refresh_the_primary(standby_url):
    with psycopg.connect(db.libpq_url(standby_url), autocommit=True) as connection:
        assert connection.execute("select pg_is_in_recovery()").fetchone()[0]
        for call in ("select flywheel.refresh()", "call flywheel.run_refresh()"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as raised:
                connection.execute(call)
            assert raised.value.diag.message_primary == STANDBY_SAYS


def test_cli_refresh_on_a_standby_says_to_refresh_the_primary(standby_url):
    result = run("refresh", database_url=standby_url)
    assert result.exit_code == 1
    assert error_line(result) == f"Error: {STANDBY_SAYS}"
