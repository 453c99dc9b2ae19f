"""Migrations: everything in schema flywheel, the source tables never touched, and every upgrade path
ending at exactly the definitions in sql/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flywheel_sync import errors
from flywheel_sync.database import db, migrate, releases
from flywheel_sync.local import generate
from tests.cli import error_line, run

SMALL = generate.Size(incidents=500, executions=300, knowledge_entries=100, playbooks=0, days=14, embedding_dim=4)

# Everything flywheel-sync defines, as text: definitions, comments, columns, triggers, indexes, grants.
CATALOG_SQL = """
select coalesce(string_agg(item, E'\\n' order by item), '') from (
    select 'function ' || p.oid::regprocedure || ' ' || pg_get_functiondef(p.oid)
           || ' owner ' || pg_get_userbyid(p.proowner) || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-') || ' acl ' || coalesce(p.proacl::text, '-')
    from pg_proc p where p.pronamespace = 'flywheel'::regnamespace
    union all
    select 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(pg_get_viewdef(c.oid), '')
           || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-') || ' acl ' || coalesce(c.relacl::text, '-')
    from pg_class c where c.relnamespace = 'flywheel'::regnamespace and c.relkind in ('r', 'v', 'm')
    union all
    select 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' comment ' || coalesce(col_description(c.oid, a.attnum), '-')
    from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    where c.relnamespace = 'flywheel'::regnamespace and c.relkind in ('r', 'v', 'm')
    union all
    select 'trigger ' || pg_get_triggerdef(t.oid) from pg_trigger t
    join pg_class c on c.oid = t.tgrelid where c.relnamespace = 'flywheel'::regnamespace and not t.tgisinternal
    union all
    select 'index ' || indexdef from pg_indexes where schemaname = 'flywheel'
) as catalog(item)
"""

SOURCE_FINGERPRINT_SQL = """
select (select md5(coalesce(string_agg(i::text, ',' order by incident_id), '')) from public.incidents i)
    || (select md5(coalesce(string_agg(k::text, ',' order by id), '')) from public.knowledge_entries k)
    || (select md5(coalesce(string_agg(e::text, ',' order by id), '')) from public.auto_repair_executions e)
    || (select md5(string_agg(format('%s.%s %s %s', table_name, column_name, data_type, column_default), ','
                              order by table_name, column_name))
        from information_schema.columns where table_schema = 'public')
    || (select md5(string_agg(indexdef, ',' order by indexdef)) from pg_indexes where schemaname = 'public')
"""


def catalog(engine: sa.Engine) -> str:
    with engine.connect() as connection:
        if connection.execute(sa.text("select to_regnamespace('flywheel')")).scalar() is None:
            return ""
        return connection.execute(sa.text(CATALOG_SQL)).scalar_one()


def fingerprint(engine: sa.Engine) -> str:
    with engine.connect() as connection:
        return connection.execute(sa.text(SOURCE_FINGERPRINT_SQL)).scalar_one()


@pytest.fixture
def platform_engine(empty_database_url):
    """A database holding populated platform tables and nothing of flywheel-sync."""
    engine = db.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    generate.generate(engine, SMALL)
    yield engine
    engine.dispose()


def test_round_trip_on_a_populated_database_leaves_every_source_row_identical(platform_engine):
    before = fingerprint(platform_engine)
    migrate.upgrade(platform_engine)
    with platform_engine.begin() as connection:
        connection.execute(sa.text("select flywheel.refresh()"))
    migrate.downgrade(platform_engine, "base")
    migrate.upgrade(platform_engine)
    assert fingerprint(platform_engine) == before


def test_downgrade_to_base_leaves_nothing_of_flywheel_sync(platform_engine):
    migrate.upgrade(platform_engine)
    migrate.downgrade(platform_engine, "base")
    with platform_engine.connect() as connection:
        assert connection.execute(sa.text("select to_regnamespace('flywheel')")).scalar() is None
        assert connection.execute(sa.text(
            "select count(*) from pg_class where relname = 'alembic_version'")).scalar_one() == 0


def test_the_head_release_names_every_object_file_in_sql_once():
    assert len(set(releases.HEAD)) == len(releases.HEAD)
    assert {releases.head_file(name) for name in releases.HEAD} == releases.head_files()
    assert migrate.head_revision() == releases.HEAD_RELEASE


def test_a_landed_release_is_never_changed_in_place():
    # Changing an object of a release that has landed opens a new release (docs/migrations.md): a
    # database migrated to the landed one keeps its definitions, and a downgrade puts them back.
    if releases.HEAD_RELEASE in releases.PAST_RELEASES:
        assert releases.definitions(releases.HEAD_RELEASE) == [
            releases.past_text(releases.PAST_RELEASES[releases.HEAD_RELEASE].commit, path)
            for path in releases.PAST_RELEASES[releases.HEAD_RELEASE].paths]
    assert sorted({*releases.PAST_RELEASES, releases.HEAD_RELEASE}) == migrate.revisions()


def test_a_past_release_file_that_git_history_lacks_is_refused_in_one_line():
    # A shallow clone or an unpacked sdist has no history to read a past release from.
    with pytest.raises(errors.PastReleaseUnavailable, match="downgrade from a full git clone of flywheel-sync"):
        releases.past_text("0" * 40, "sql/refresh/refresh.sql")


def test_every_past_release_is_readable_from_this_checkout():
    for release in releases.PAST_RELEASES:
        assert all("-- drop:" in text for text in releases.definitions(release))


@pytest.mark.parametrize("start", migrate.revisions())
def test_upgrading_from_any_revision_ends_at_the_same_definitions(databases, start):
    straight = db.create_engine(databases.url(databases.create()), poolclass=sa.pool.NullPool)
    stepped = db.create_engine(databases.url(databases.create()), poolclass=sa.pool.NullPool)
    migrate.upgrade(straight)
    migrate.upgrade(stepped, start)
    migrate.upgrade(stepped)
    assert catalog(stepped) == catalog(straight) != ""


def test_offline_sql_builds_the_same_schema_as_online(databases):
    offline = databases.url(databases.create())
    online = db.create_engine(databases.url(databases.create()), poolclass=sa.pool.NullPool)
    with psycopg.connect(db.libpq_url(offline), autocommit=True) as connection:
        connection.execute(migrate.upgrade_sql())
    migrate.upgrade(online)
    assert catalog(db.create_engine(offline, poolclass=sa.pool.NullPool)) == catalog(online)


def test_plain_alembic_with_the_shipped_ini_upgrades(empty_database_url):
    alembic = Path(sys.executable).with_name("alembic")
    env = {**os.environ, "FLYWHEEL_DATABASE_URL": empty_database_url}
    subprocess.run([str(alembic), "-c", "alembic.ini", "upgrade", "head"], check=True, env=env,
                   cwd=Path(__file__).resolve().parents[1], capture_output=True)
    assert migrate.current_revision(db.create_engine(empty_database_url)) == migrate.head_revision()


def test_every_object_and_column_in_flywheel_has_a_comment(engine):
    undocumented = [line.split(" comment ")[0] for line in catalog(engine).splitlines() if " comment -" in line]
    assert undocumented == []


def test_migrate_cli_says_what_it_did(empty_database_url):
    first = run("migrate", database_url=empty_database_url)
    again = run("migrate", database_url=empty_database_url)
    assert first.exit_code == 0 and "upgraded from nothing to revision" in first.output
    assert again.exit_code == 0 and "already at revision" in again.output


def test_downgrade_cli_to_base_says_everything_was_removed(database_url):
    result = run("downgrade", "base", database_url=database_url)
    assert result.exit_code == 0 and "nothing (removed)" in result.output


def test_downgrade_to_base_advises_dropping_the_roles_only_where_no_other_database_uses_them(database_url):
    result = run("downgrade", "base", database_url=database_url)
    [advice] = [line for line in result.output.splitlines() if "DROP ROLE" in line]
    assert "cluster-wide" in advice and "no other database of this cluster" in advice
    assert advice.endswith("DROP ROLE flywheel_reader, flywheel_refresher, flywheel_owner;")


def test_migrate_sql_prints_the_ddl_without_a_database():
    result = run("migrate", "--sql")
    assert result.exit_code == 0
    assert "create table flywheel.snapshots" in result.output and "create function flywheel.refresh" in result.output


def test_migrate_sql_from_nothing_prints_each_object_of_the_head_release_once():
    script = migrate.upgrade_sql()
    head = dict(zip(releases.HEAD, releases.definitions(releases.HEAD_RELEASE)))
    assert {name: script.count(text.strip()) for name, text in head.items()} == {name: 1 for name in head}
    assert re.findall(r"^drop (?:function|view|procedure)", script, re.MULTILINE) == []


def test_migrate_sql_from_a_revision_prints_only_the_upgrade_from_it():
    script = migrate.upgrade_sql(start="0002")
    assert "create table flywheel.settings (" not in script and "create table flywheel.playbook_totals" in script
    assert script.count("create function flywheel.refresh(") == 1


def test_a_fresh_install_from_migrate_sql_has_the_catalog_of_upgrading_one_revision_at_a_time(databases):
    from_script = databases.url(databases.create())
    stepped = db.create_engine(databases.url(databases.create()), poolclass=sa.pool.NullPool)
    with psycopg.connect(db.libpq_url(from_script), autocommit=True) as connection:
        connection.execute(migrate.upgrade_sql())
    for revision in migrate.revisions():
        migrate.upgrade(stepped, revision)
    assert catalog(db.create_engine(from_script, poolclass=sa.pool.NullPool)) == catalog(stepped) != ""


def test_upgrade_to_0004_warns_of_a_setting_out_of_its_new_bounds(empty_database_url):
    engine = db.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        generate.create_reference_schema(connection)
    migrate.upgrade(engine, "0003")
    with engine.begin() as connection:
        connection.execute(sa.text("update flywheel.settings set value = '\"100 days\"' where key = 'refresh_lock_wait'"))
    result = run("migrate", database_url=empty_database_url)
    assert result.exit_code == 0, result.output
    assert ('warning: setting refresh_lock_wait: "100 days" is longer than 1 day, the most this setting takes; '
            "the refresh may fail until it is set within bounds (flywheel-sync settings set)") in result.output


@pytest.mark.parametrize("command", [["migrate", "--revision", "0009"], ["downgrade", "0009"],
                                     ["migrate", "--sql", "--from", "5"]])
def test_an_unknown_revision_is_refused_in_one_line_listing_the_revisions(database_url, command):
    result = run(*command, database_url=database_url)
    assert result.exit_code == 1
    assert error_line(result).startswith("Error: no revision ") and "0001, 0002" in error_line(result)
    assert "Traceback" not in result.output


def test_each_metric_of_the_summary_names_in_its_comment_the_function_that_defines_it(engine):
    with engine.connect() as connection:
        comments = dict(connection.execute(sa.text(
            "select attname, col_description(attrelid, attnum) from pg_attribute"
            " where attrelid = 'flywheel.summary'::regclass and attnum > 0")).all())
        functions = set(connection.execute(sa.text(
            "select proname from pg_proc where pronamespace = 'flywheel'::regnamespace")).scalars())
    not_metrics = {"snapshot_id", "computed_at", "timezone", "settings", "settings_version_id", "refresh_ms"}
    named = {column: re.search(r"defined by flywheel\.(\w+)\(\) in sql/metrics/(\w+)\.sql", comment or "")
             for column, comment in comments.items() if column not in not_metrics}
    assert [column for column, match in named.items() if match is None] == []
    assert {match[1] for match in named.values()} <= functions
    assert all((releases.SQL_DIR / "metrics" / f"{match[2]}.sql").is_file() for match in named.values())
