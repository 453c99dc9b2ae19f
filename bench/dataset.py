"""The benchmark's servers and data set: built once per scale with the project's generator, then reused.

Two PostgreSQL servers: the embedded one (PostgreSQL 16 from a wheel, no JIT library) and the
machine's Debian PostgreSQL 15 (flywheel_sync.local.pgcluster: its default settings, JIT on), a cluster
under bench/.cache/debian15 that the benchmark starts itself; FLYWHEEL_DATABASE_URL overrides both.

Each scale, layout (plain or partitioned source tables) and state (normal; stuck: a fifth of all
incidents left active; realistic: the last week's traffic the same at every scale, see
flywheel_sync.local.generate) gets a database of its own, ``flywheel_bench_<scale>[_partitioned][_<state>]``,
marked by a comment so that the benchmark only ever drops a database it made. A database is reused
when its row counts are exactly the scale's (the benchmark deletes every row it adds, so a finished
run leaves them so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
import sqlalchemy as sa

import grafana_panels
from flywheel_sync.database import db, migrate
from flywheel_sync.local import embedded, generate, pgcluster

CACHE = Path(__file__).resolve().parent / ".cache"
POSTGRES_KINDS = ("embedded", "debian15")
STATES = generate.STATES
MARKER = "flywheel-sync bench data, scale {scale}{variant}: safe to drop"
PLAYBOOKS_SQL = """
insert into flywheel.playbooks (redis_key, playbook_id, status, success_count, failure_count, document, valid,
                                content_hash)
select convert_to('playbook:PB-' || n, 'UTF8'), 'PB-' || n,
       case when n %% 10 < 6 then 'approved' when n %% 10 < 9 then 'draft' else 'deprecated' end,
       n %% 50, n %% 7, jsonb_build_object('id', 'PB-' || n), true, sha224(convert_to('PB-' || n, 'UTF8'))
from generate_series(1, %(playbooks)s) as n
"""


@dataclass(frozen=True)
class Servers:
    postgres_url: str
    redis_url: str
    embedded: bool


def servers(postgres: str = "embedded") -> Servers:
    """FLYWHEEL_DATABASE_URL / FLYWHEEL_REDIS_URL when set, else servers under bench/.cache/: the
    embedded PostgreSQL or the Debian one (``postgres``), and an embedded Redis."""
    postgres_url = os.environ.get(db.DATABASE_URL_ENV)
    redis_url = os.environ.get(db.REDIS_URL_ENV)
    started = not (postgres_url and redis_url)
    postgres_url = postgres_url or postgres_server(postgres)
    redis_url = redis_url or embedded.start_redis(CACHE / "redis").url
    return Servers(postgres_url, redis_url, started)


def postgres_server(kind: str) -> str:
    """The superuser URL of the benchmark's own server of ``kind`` (embedded or debian15), started when down."""
    if kind == "debian15":
        return pgcluster.Cluster.open(CACHE / "debian15").url()
    return embedded.start_postgres(CACHE / "postgres").url


def stop_servers() -> None:
    for kind in ("postgres", "redis"):
        embedded.stop(CACHE / kind)
    if (CACHE / "debian15" / "data").exists():
        pgcluster.Cluster(CACHE / "debian15").stop()


def database_name(scale: str, layout: str = "plain", state: str = "normal") -> str:
    variant = "".join(f"_{part}" for part in (layout, state) if part not in ("plain", "normal"))
    return f"flywheel_bench_{scale.lower()}{variant}"


def libpq(url: str) -> str:
    return db.libpq_url(url)


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(libpq(server_url), autocommit=True)


def _counts(url: str) -> dict[str, int] | None:
    try:
        with psycopg.connect(libpq(url)) as connection:
            return {table: connection.execute(f"select count(*) from public.{table}").fetchone()[0]
                    for table in ("incidents", "auto_repair_executions", "knowledge_entries")}
    except psycopg.Error:
        return None


def _wanted(size: generate.Size) -> dict[str, int]:
    return {"incidents": size.incidents, "auto_repair_executions": size.executions,
            "knowledge_entries": size.knowledge_entries}


def ensure(server_url: str, scale: str, say, layout: str = "plain", state: str = "normal") -> str:
    """The URL of the scale's database (in ``layout``, in ``state``), built when absent or not of the
    scale's size; migrated to head."""
    name = database_name(scale, layout, state)
    url = db.parse_url(server_url).set(database=name).render_as_string(hide_password=False)
    size = generate.SIZES[scale]
    marker = MARKER.format(scale=scale, variant=name.removeprefix(f"flywheel_bench_{scale.lower()}").replace("_", ", "))
    with _admin(server_url) as admin:
        found = admin.execute("select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                              (name,)).fetchone()
        if found is not None and found[0] != marker:
            raise SystemExit(f"database {name} exists and was not made by the benchmark; drop or rename it")
        reuse = found is not None and _counts(url) == _wanted(size)
        if not reuse:
            if found is not None:
                admin.execute(f"drop database {name} with (force)")
            admin.execute(f"create database {name}")
            admin.execute(f"comment on database {name} is '{marker}'")
    if reuse:
        say(f"reusing {name} ({size.incidents:,} incidents)")
    else:
        say(f"building {name}: {size.incidents:,} incidents, {size.executions:,} executions, "
            f"{size.knowledge_entries:,} knowledge entries, {layout}, {state} (once; cached afterwards)")
        engine = db.create_engine(url, poolclass=sa.pool.NullPool)
        generate.generate(engine, size, layout=layout, state=state)
        engine.dispose()
        with psycopg.connect(libpq(url), autocommit=True) as connection:
            # The visibility map lets index-only scans skip the heap, as on a platform table autovacuum keeps.
            connection.execute("vacuum (analyze) public.incidents, public.auto_repair_executions,"
                               " public.knowledge_entries")
    engine = db.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        # A data set built by an older checkout gets the indexes the reference schema gained since.
        generate.create_reference_schema(connection, layout=layout)
    migrate.upgrade(engine)
    engine.dispose()
    with psycopg.connect(libpq(url)) as connection:
        mirrored = connection.execute("select count(*) from flywheel.playbooks").fetchone()[0]
        if mirrored != size.playbooks:
            connection.execute("delete from flywheel.playbooks")
            connection.execute(PLAYBOOKS_SQL, {"playbooks": size.playbooks})
        # The benchmark times the mode it asks for: no routine refresh turns into the nightly full one.
        connection.execute("update flywheel.settings set value = 'null' where key = 'full_refresh_at'")
    _ensure_history(url, say)
    return url


def _ensure_history(url: str, say) -> None:
    """Two years of history in tiers at one refresh every 5 s, for the dashboard's queries to read."""
    engine = db.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        if not grafana_panels.has_history(connection):
            say("adding two years of history (raw snapshots and the tiers of buckets) for the dashboard's queries")
            connection.execute(sa.text("select flywheel.refresh(full => true)"))
            grafana_panels.add_history(connection)
    engine.dispose()
