"""The CLI's known failures: one line that says what to do, exit 1, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import click
import psycopg
import sqlalchemy as sa

from flywheel_sync.cli import cli
from flywheel_sync.database import db
from tests.cli import error_line, run
from tests.platform import refresh


def test_missing_database_url_names_the_variable_to_set():
    result = run("refresh")
    assert result.exit_code == 1
    assert "set FLYWHEEL_DATABASE_URL or pass --database-url" in error_line(result)


def test_unreachable_database_names_the_url_with_the_password_masked():
    result = run("summary", database_url="postgresql://flywheel:s3cret@127.0.0.1:1/platform")
    line = error_line(result)
    assert result.exit_code == 1
    assert "postgresql://flywheel:***@127.0.0.1:1/platform" in line and "s3cret" not in line
    assert "FLYWHEEL_DATABASE_URL" in line


def test_url_of_another_database_kind_is_refused():
    result = run("refresh", database_url="mysql://root@localhost/platform")
    assert result.exit_code == 1 and "is not a PostgreSQL URL" in error_line(result)


def test_plain_and_psycopg_style_urls_are_both_accepted(database_url):
    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    for url in (plain, plain.replace("postgresql://", "postgresql+psycopg://")):
        assert run("settings", database_url=url).exit_code == 0


def test_database_without_schema_flywheel_says_run_migrate(empty_database_url):
    result = run("refresh", database_url=empty_database_url)
    assert result.exit_code == 1 and "run `flywheel-sync migrate` first" in error_line(result)


def test_summary_before_the_first_refresh_says_run_refresh(database_url):
    result = run("summary", database_url=database_url)
    assert result.exit_code == 1 and "run `flywheel-sync refresh` first" in error_line(result)


def test_connection_dropped_during_a_command_is_one_line(engine, database_url):
    """The refresh waits on the lock held here; its backend is then terminated under it."""
    with psycopg.connect(db.libpq_url(database_url)) as holder:
        holder.execute("select flywheel.take_refresh_lock()")

        def terminate_waiting_refresh():
            with psycopg.connect(db.libpq_url(database_url), autocommit=True) as killer:
                for _ in range(100):
                    killed = killer.execute(
                        "select pg_terminate_backend(pid) from pg_stat_activity"
                        " where datname = current_database() and application_name = 'flywheel-sync'"
                        " and wait_event_type = 'Lock'").fetchall()
                    if killed:
                        return
                    threading.Event().wait(0.05)

        killer = threading.Thread(target=terminate_waiting_refresh)
        killer.start()
        result = run("refresh", database_url=database_url)
        killer.join()
    assert result.exit_code == 1
    assert "cannot reach the database" in error_line(result)


def test_summary_table_shows_targets_and_the_rate_source(engine, database_url):
    with engine.begin() as connection:
        refresh(connection)
    result = run("summary", database_url=database_url)
    assert result.exit_code == 0
    assert "playbook_count" in result.output and "target >= 20" in result.output and "NOT MET" in result.output
    assert "source insufficient, sample 0" in result.output


def test_refresh_prints_each_step_and_json_for_scripts(database_url):
    table = run("refresh", database_url=database_url)
    assert table.exit_code == 0 and "daily_incidents" in table.output and " ok in " in table.output
    as_json = run("refresh", "--json", database_url=database_url)
    assert as_json.exit_code == 0 and '"status": "ok"' in as_json.output


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "flywheel_sync", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage: flywheel-sync" in result.stdout


def test_every_command_has_help_with_an_example():
    context = click.Context(cli)
    for name in cli.list_commands(context):
        if isinstance(cli.get_command(context, name), click.Group) and name == "embedded":
            continue
        result = run(name, "--help")
        assert result.exit_code == 0 and "Example:" in result.output, name


def test_a_mistyped_command_is_refused_with_the_command_meant():
    result = run("refrsh")
    assert result.exit_code == 2 and "No such command 'refrsh'. Did you mean 'refresh'?" in result.output


def test_database_error_no_command_expected_is_one_line_with_its_sqlstate_and_the_grant_to_run(database_url):
    """The settings read by a user granted nothing in schema flywheel: PostgreSQL's refusal, in one
    line, with the GRANT that gives a login its flywheel role."""
    engine = sa.create_engine(db.parse_url(database_url), isolation_level="AUTOCOMMIT")
    role = f"flywheel_test_nobody_{uuid.uuid4().hex[:8]}"
    with engine.connect() as connection:
        connection.execute(sa.text(f"create role {role} login password '{role}'"))
    try:
        url = db.parse_url(database_url).set(username=role, password=role).render_as_string(hide_password=False)
        result = run("settings", database_url=url)
        assert result.exit_code == 1
        assert "permission denied" in error_line(result) and "SQLSTATE 42501" in error_line(result)
        assert "GRANT flywheel_reader TO <login>;" in error_line(result)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f"drop role {role}"))
        engine.dispose()
