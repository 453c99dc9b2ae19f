"""Least privilege by construction: the functions that run with their owner's rights belong to
flywheel_owner, a NOLOGIN role that can read the sources and write schema flywheel and nothing else,
and they run with row_security = off, so the platform's code never runs inside them with more."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from flywheel_sync.database import db, migrate
from flywheel_sync.errors import MigrationPrivilegesMissing
from flywheel_sync.local import generate
from tests.cli import run
from tests.platform import AS_OF, add_incident


class PlatformRoles:
    """Roles of one test: the platform's table owner and an admin role it wants membership of.

    Both are cluster-wide, so they carry a random suffix and are dropped afterwards, with everything
    they own in the test's database."""

    def __init__(self, engine: sa.Engine) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.engine = engine
        self.table_owner = f"platform_owner_{suffix}"
        self.admin = f"flywheel_admin_{suffix}"
        with engine.begin() as connection:
            connection.execute(sa.text(f"create role {self.table_owner} nologin"))
            connection.execute(sa.text(f"create role {self.admin} nologin"))
            # So that a test login without superuser (CI's production mode) may give a table to the
            # owner and drop what the roles own.
            connection.execute(sa.text(f"grant {self.table_owner}, {self.admin} to current_user"))

    def table_owner_is_member_of_admin(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(sa.text("select pg_has_role(:member, :role, 'member')"),
                                      {"member": self.table_owner, "role": self.admin}).scalar_one()

    def drop(self) -> None:
        with self.engine.begin() as connection:
            for role in (self.table_owner, self.admin):
                connection.execute(sa.text(f"drop owned by {role}"))
                connection.execute(sa.text(f"drop role {role}"))


@pytest.fixture
def platform_roles(engine) -> Iterator[PlatformRoles]:
    roles = PlatformRoles(engine)
    yield roles
    roles.drop()


def give_incidents_to(connection: sa.Connection, roles: PlatformRoles) -> None:
    """incidents (one row, so that code run per row runs) owned by the platform's role, with a
    function of its own that tries to take the admin role: what a table owner's code would do if it
    ran with the refresh's rights."""
    add_incident(connection, status="investigating")
    # A new owner needs CREATE on the schema, unless a superuser gives the table away.
    connection.execute(sa.text(f"grant create on schema public to {roles.table_owner}"))
    connection.execute(sa.text(f"alter table incidents owner to {roles.table_owner}"))
    connection.execute(sa.text(f"""
        create function public.take_admin() returns boolean language plpgsql as $$
        begin
            execute 'grant {roles.admin} to {roles.table_owner}';
            return true;
        end $$"""))
    connection.execute(sa.text(f"alter function public.take_admin() owner to {roles.table_owner}"))
    connection.execute(sa.text("grant execute on function public.take_admin() to public"))


def refresh_outcome(engine: sa.Engine) -> dict:
    with engine.begin() as connection:
        return connection.execute(sa.text("select flywheel.refresh(:as_of)"), {"as_of": AS_OF}).scalar_one()


def test_a_source_tables_rls_policy_never_runs_inside_the_refresh(engine, platform_roles):
    with engine.begin() as connection:
        give_incidents_to(connection, platform_roles)
        connection.execute(sa.text("alter table incidents enable row level security"))
        connection.execute(sa.text("create policy everything on incidents using (public.take_admin())"))
    outcome = refresh_outcome(engine)
    assert not platform_roles.table_owner_is_member_of_admin()
    assert outcome["status"] == "failed"
    assert 'row-level security policy for table "incidents"' in outcome["error"]


def test_a_view_put_in_place_of_a_source_table_runs_with_no_right_to_take_a_role(engine, platform_roles):
    with engine.begin() as connection:
        give_incidents_to(connection, platform_roles)
        connection.execute(sa.text("alter table incidents rename to incidents_data"))
        connection.execute(sa.text("create view incidents as select * from incidents_data where public.take_admin()"))
        connection.execute(sa.text(f"alter view incidents owner to {platform_roles.table_owner}"))
        connection.execute(sa.text("grant select on incidents to public"))
    outcome = refresh_outcome(engine)
    assert not platform_roles.table_owner_is_member_of_admin()
    assert outcome["status"] == "failed" and outcome["sqlstate"] == "42501"  # insufficient_privilege


def test_every_security_definer_routine_belongs_to_flywheel_owner_and_runs_without_row_security(connection):
    routines = connection.execute(sa.text(
        "select p.proname, pg_get_userbyid(p.proowner), p.proconfig from pg_proc p"
        " where p.pronamespace = 'flywheel'::regnamespace and p.prosecdef order by 1")).all()
    assert {name for name, _, _ in routines} >= {"refresh", "count_playbooks"}
    assert [(name, owner) for name, owner, _ in routines if owner != "flywheel_owner"] == []
    assert [name for name, _, config in routines if "row_security=off" not in config] == []


def test_flywheel_owner_can_neither_log_in_nor_create_roles_nor_bypass_anything(connection):
    attributes = connection.execute(sa.text(
        "select rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication"
        " from pg_roles where rolname = 'flywheel_owner'")).one()
    memberships = connection.execute(sa.text(
        "select count(*) from pg_auth_members where member = 'flywheel_owner'::regrole")).scalar_one()
    assert tuple(attributes) == (False,) * 6 and memberships == 0


def test_flywheel_owner_cannot_change_settings_or_the_version_table(connection):
    connection.execute(sa.text("set local role flywheel_owner"))
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        connection.execute(sa.text("update flywheel.settings set value = '5' where key = 'min_sample'"))


def check_findings(database_url: str) -> list[dict]:
    result = run("check", "--json", database_url=database_url)
    return json.loads(result.output)["findings"]


def only_finding_after(database_url: str, engine: sa.Engine, statement: str) -> dict:
    with engine.begin() as connection:
        connection.execute(sa.text(statement))
    [finding] = check_findings(database_url)
    return finding


def test_check_reports_row_level_security_on_a_source_table_as_an_error(database_url, engine):
    finding = only_finding_after(database_url, engine, "alter table knowledge_entries enable row level security")
    assert finding["level"] == "error" and finding["subject"] == "knowledge_entries"
    assert "row-level security" in finding["message"]
    assert finding["statement"] == "ALTER TABLE public.knowledge_entries DISABLE ROW LEVEL SECURITY;"


def test_check_reports_a_view_in_place_of_a_source_table(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table incidents rename to incidents_data"))
        connection.execute(sa.text("create view incidents as select * from incidents_data"))
    warnings = [f for f in check_findings(database_url) if f["subject"] == "incidents" and f["level"] == "warning"]
    assert len(warnings) == 1 and "is a view" in warnings[0]["message"] and "flywheel_owner" in warnings[0]["message"]


def test_check_warns_when_every_role_may_create_a_view_in_the_source_schema(database_url, engine):
    finding = only_finding_after(database_url, engine, "grant create on schema public to public")
    assert finding["level"] == "warning" and finding["subject"] == "public"
    assert finding["statement"] == "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"


def test_check_reports_a_source_table_flywheel_owner_cannot_read_with_the_grant_to_run(database_url, engine):
    finding = only_finding_after(database_url, engine, "revoke select on auto_repair_executions from flywheel_owner")
    assert finding["level"] == "error" and finding["subject"] == "auto_repair_executions"
    assert finding["statement"] == "GRANT SELECT ON public.auto_repair_executions TO flywheel_owner;"


def test_check_reports_a_security_definer_routine_owned_by_another_role(database_url, engine):
    finding = only_finding_after(database_url, engine,
                                 "alter function flywheel.count_playbooks() owner to current_user")
    assert finding["level"] == "error" and finding["subject"] == "flywheel.count_playbooks()"
    assert finding["message"].startswith("runs as ") and "flywheel_owner" in finding["message"]


def test_migrate_warns_of_a_source_flywheel_owner_cannot_read_in_sentences_with_the_grant_last(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("revoke select on auto_repair_executions from flywheel_owner"))
    result = run("migrate", database_url=database_url)
    assert result.exit_code == 0
    assert result.output.splitlines()[1:] == [
        "warning: auto_repair_executions: flywheel_owner may not read it: every refresh fails with permission denied; "
        "its owner (or a superuser) grants it. Run: GRANT SELECT ON public.auto_repair_executions TO flywheel_owner;",
        "migrate: 1 warning above needs action before the refresh can be trusted (--strict exits 3 on warnings)"]


def test_migrate_strict_exits_3_when_the_migrated_schema_has_a_warning(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("revoke select on auto_repair_executions from flywheel_owner"))
    result = run("migrate", "--strict", database_url=database_url)
    assert result.exit_code == 3
    assert result.output.splitlines()[-1] == (
        f"Error: schema flywheel is at revision {migrate.head_revision()}, with 1 warning above: run what it says, "
        "then migrate again")


def test_migrate_strict_exits_0_without_warnings(database_url):
    assert run("migrate", "--strict", database_url=database_url).exit_code == 0


def test_migrating_to_a_revision_whose_refresh_runs_as_the_migrating_role_warns(empty_database_url):
    """As superuser (embedded) or as the non-superuser test login (CI's production mode): either way
    not flywheel_owner, and the warning names who."""
    result = run("migrate", "--revision", "0003", database_url=empty_database_url)
    assert result.exit_code == 0
    assert "warning: flywheel.refresh(timestamp with time zone,boolean): runs as " in result.output


def test_migrating_to_head_as_superuser_gives_no_warning(empty_database_url):
    with db.create_engine(empty_database_url, poolclass=sa.pool.NullPool).begin() as connection:
        generate.create_reference_schema(connection)
    result = run("migrate", database_url=empty_database_url)
    assert result.exit_code == 0 and "warning" not in result.output, result.output


def test_check_before_migrating_says_what_the_migrating_role_lacks(empty_database_url):
    engine = db.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    name = f"flywheel_test_lacking_{uuid.uuid4().hex[:10]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f"create role {name} login password '{name}'"))
    try:
        url = db.parse_url(empty_database_url).set(username=name, password=name).render_as_string(hide_password=False)
        subjects = {f["subject"] for f in check_findings(url) if f["level"] == "error"}
        assert {"database", "flywheel_owner"} <= subjects
        with pytest.raises(MigrationPrivilegesMissing, match="docs/migrations.md"):
            migrate.upgrade(db.create_engine(url, poolclass=sa.pool.NullPool))
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"drop role {name}"))
        engine.dispose()
