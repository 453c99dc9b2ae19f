"""A DBA's install: on a PostgreSQL cluster of the test's own (roles are cluster-wide, and these tests
need a cluster where no flywheel role exists yet, or one that is a standby), as documented in
docs/migrations.md, with nothing but the statements it lists, and from a built wheel outside the
repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flywheel_sync.database import db
from flywheel_sync.local import embedded, generate
from tests.cli import error_line, run

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS_DOC = ROOT / "docs" / "migrations.md"
DBA_SECTION = "## What the migrating role needs"


def dba_statements() -> list[str]:
    """The statements docs/migrations.md gives a superuser to run before a non-superuser migrates,
    exactly as printed there (its first ```sql block under DBA_SECTION)."""
    section = MIGRATIONS_DOC.read_text().split(DBA_SECTION, 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.DOTALL)[1]
    without_comments = re.sub(r"--[^\n]*", "", block)
    return [statement.strip() for statement in without_comments.split(";") if statement.strip()]


# The PostgreSQL versions a DBA's install is tried on: the embedded one (16), and the machine's
# Debian PostgreSQL 15 where it is installed (role membership rules changed in 16).
DEBIAN_POSTGRES_15 = Path("/usr/lib/postgresql/15/bin")
VERSIONS = [
    pytest.param(None, id="embedded"),
    pytest.param(DEBIAN_POSTGRES_15, id="debian-15", marks=pytest.mark.skipif(
        not (DEBIAN_POSTGRES_15 / "initdb").exists(), reason="Debian's PostgreSQL 15 is not installed")),
]


class Cluster:
    """A PostgreSQL cluster of one test (127.0.0.1, a free port, trust auth)."""

    def __init__(self, folder: Path, binaries: Path | None = None) -> None:
        self.folder = folder
        self.binaries = binaries
        self.url = embedded.start_postgres(folder, binaries).url

    def database_url(self, database: str = "postgres", user: str = "postgres") -> str:
        return db.parse_url(self.url).set(database=database, username=user).render_as_string(hide_password=False)

    def execute(self, *statements: str, database: str = "postgres", user: str = "postgres") -> None:
        with psycopg.connect(db.libpq_url(self.database_url(database, user)), autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)

    def platform_database(self, name: str = "platform") -> str:
        """A database holding the platform's (reference) tables, owned by the superuser."""
        self.execute(f"create database {name}")
        engine = db.create_engine(self.database_url(name), poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            generate.create_reference_schema(connection)
        engine.dispose()
        return name

    def restart_as_standby(self) -> None:
        """Restart in standby mode: read-only, in recovery, waiting for WAL that never comes."""
        embedded.stop(self.folder)
        signal = self.folder / "data" / "standby.signal"
        signal.touch()
        shutil.copystat(self.folder / "data" / "PG_VERSION", signal)
        if os.geteuid() == 0:
            owner = (self.folder / "data").stat()
            os.chown(signal, owner.st_uid, owner.st_gid)
        self.url = embedded.start_postgres(self.folder, self.binaries).url


def own_cluster(binaries: Path | None) -> Iterator[Cluster]:
    # Not under pytest's tmp_path: a concurrent pytest session resets /tmp/pytest-of-<user> to 0700,
    # and the server runs as another user when the tests run as root.
    own = Cluster(Path(tempfile.mkdtemp(prefix="flywheel-test-cluster-")), binaries)
    yield own
    embedded.stop(own.folder)
    shutil.rmtree(own.folder, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    yield from own_cluster(None)


@pytest.fixture(params=VERSIONS)
def cluster_of_each_version(request) -> Iterator[Cluster]:
    yield from own_cluster(request.param)


def test_a_non_superuser_without_createrole_migrates_after_the_documented_statements(cluster_of_each_version):
    cluster = cluster_of_each_version
    database = cluster.platform_database()
    statements = dba_statements()
    assert any(statement.startswith("GRANT SELECT ON") for statement in statements)
    cluster.execute(*statements, database=database)
    admin = cluster.database_url(database, user="flywheel_admin")

    checked = run("check", database_url=admin)
    migrated = run("migrate", database_url=admin)

    assert checked.exit_code == 0 and "ERROR" not in checked.output, checked.output
    assert migrated.exit_code == 0 and "upgraded from nothing" in migrated.output, migrated.output
    cluster.execute("create role flywheel_worker login", database=database)
    cluster.execute("grant flywheel_refresher to flywheel_worker", database=database, user="flywheel_admin")
    refreshed = run("refresh", database_url=cluster.database_url(database, user="flywheel_worker"))
    assert refreshed.exit_code == 0, refreshed.output
    with psycopg.connect(db.libpq_url(admin)) as connection:
        assert connection.execute("select rolsuper or rolcreaterole from pg_roles where rolname = current_user"
                                  ).fetchone() == (False,)


def test_the_documented_non_superuser_downgrades_to_base_and_migrates_again(cluster):
    database = cluster.platform_database()
    cluster.execute(*dba_statements(), database=database)
    admin = cluster.database_url(database, user="flywheel_admin")
    assert run("migrate", database_url=admin).exit_code == 0
    removed = run("downgrade", "base", database_url=admin)
    again = run("migrate", database_url=admin)
    assert removed.exit_code == 0 and "nothing (removed)" in removed.output, removed.output
    assert again.exit_code == 0 and "warning" not in again.output, again.output
    assert run("refresh", database_url=admin).exit_code == 0


def test_a_login_with_createrole_creates_the_roles_itself_and_migrates(cluster_of_each_version):
    cluster = cluster_of_each_version
    database = cluster.platform_database()
    cluster.execute("create role flywheel_admin login createrole",
                    f"grant create on database {database} to flywheel_admin",
                    "grant select on incidents, knowledge_entries, auto_repair_executions"
                    " to flywheel_admin with grant option", database=database)
    admin = cluster.database_url(database, user="flywheel_admin")
    migrated = run("migrate", database_url=admin)
    assert migrated.exit_code == 0 and "warning" not in migrated.output, migrated.output
    assert run("refresh", database_url=admin).exit_code == 0


def test_migrate_refuses_up_front_with_what_is_missing_when_the_role_lacks_a_privilege(cluster_of_each_version):
    cluster = cluster_of_each_version
    database = cluster.platform_database()
    cluster.execute("create role flywheel_admin login", f"grant create on database {database} to flywheel_admin",
                    database=database)
    result = run("migrate", database_url=cluster.database_url(database, user="flywheel_admin"))
    line = error_line(result)
    assert result.exit_code == 1
    assert "CREATEROLE" in line and "docs/migrations.md" in line, line
    assert "schema flywheel" not in run("check", database_url=cluster.database_url(database)).output


def test_logins_keep_their_flywheel_roles_through_downgrade_base_and_migrate(cluster):
    database = cluster.platform_database()
    url = cluster.database_url(database)
    assert run("migrate", database_url=url).exit_code == 0
    cluster.execute("create role grafana_flywheel login in role flywheel_reader",
                    "create role flywheel_worker login in role flywheel_refresher", database=database)

    removed = run("downgrade", "base", database_url=url)
    assert run("migrate", database_url=url).exit_code == 0

    assert "roles flywheel_reader, flywheel_refresher and flywheel_owner are kept" in removed.output
    with psycopg.connect(db.libpq_url(url)) as connection:
        assert connection.execute(
            "select pg_has_role('grafana_flywheel', 'flywheel_reader', 'member'),"
            " pg_has_role('flywheel_worker', 'flywheel_refresher', 'member')").fetchone() == (True, True)


def test_migrate_refuses_a_flywheel_owner_that_is_a_superuser(cluster):
    database = cluster.platform_database()
    cluster.execute("create role flywheel_owner superuser nologin")
    result = run("migrate", database_url=cluster.database_url(database))
    assert result.exit_code == 1
    assert "flywheel_owner must be a plain NOLOGIN role" in error_line(result)
    assert "ALTER ROLE flywheel_owner NOSUPERUSER" in error_line(result)


def test_migrate_on_a_read_only_standby_says_to_run_it_on_the_primary(cluster):
    database = cluster.platform_database()
    cluster.restart_as_standby()
    result = run("migrate", database_url=cluster.database_url(database))
    assert result.exit_code == 1
    assert error_line(result) == "Error: read-only standby: run this on the primary"


@pytest.mark.slow
def test_the_built_wheel_installed_outside_the_repository_migrates_and_refreshes(cluster, tmp_path):
    database = cluster.platform_database()
    wheels = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(wheels)],
                   cwd=ROOT, check=True, capture_output=True)
    [wheel] = wheels.glob("flywheel_sync-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The wheel's dependencies come from this test environment (no network in a test): a .pth puts
    # its site-packages after the new venv's own, so flywheel_sync itself is the wheel's copy.
    own_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (own_site / "test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": os.environ["PATH"], "FLYWHEEL_DATABASE_URL": cluster.database_url(database)}

    def flywheel_sync(*arguments: str) -> str:
        done = subprocess.run([str(venv / "bin" / "flywheel-sync"), *arguments], cwd=elsewhere, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    location = subprocess.run([str(python), "-c", "import flywheel_sync; print(flywheel_sync.__file__)"],
                              cwd=elsewhere, check=True, capture_output=True, text=True).stdout
    assert location.startswith(str(own_site))
    assert "upgraded from nothing" in flywheel_sync("migrate")
    assert "(full) ok" in flywheel_sync("refresh")
    # A downgrade needs the past release's files: the wheel packs them (hatch_build.py), as there is no git here.
    assert "0005" in flywheel_sync("downgrade", "0005")
    assert "upgraded from 0005 to revision" in flywheel_sync("migrate")
