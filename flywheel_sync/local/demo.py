"""`make demo`: from nothing to computed metrics on one machine.

Uses the servers in FLYWHEEL_DATABASE_URL / FLYWHEEL_REDIS_URL when set, else starts embedded ones
under .flywheel/ in the current folder. The demo's data goes into a database of its own,
flywheel_demo, on that server, so a URL to a real platform database is never written to; its
playbooks go under the Redis key prefix flywheel-demo:playbook:, so a real Redis keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..database import db, migrate, refresh
from ..mirror import sync_pass as syncing
from ..outputs import summary
from . import embedded, generate

DEMO_DATABASE = "flywheel_demo"
DEMO_MARKER = "flywheel-sync demo data: safe to drop"
HOME = Path(".flywheel")
# The demo's playbooks live under a prefix of their own, so a real Redis keeps its playbook:PB-* keys.
DEMO_PLAYBOOK_PREFIX = "flywheel-demo:playbook:"
DEMO_INVALID_PLAYBOOKS = 2


@dataclass(frozen=True)
class DemoServers:
    database_url: str
    redis_url: str
    embedded: bool


def servers(database_url: str | None, redis_url: str | None) -> DemoServers:
    """The servers to use: the given URLs, or embedded servers started under .flywheel/."""
    started = False
    if not database_url:
        database_url = embedded.start_postgres(HOME / "postgres").url
        started = True
    if not redis_url:
        redis_url = start_redis().url
        started = True
    return DemoServers(database_url, redis_url, started)


def start_redis() -> embedded.Server:
    """The demo's embedded Redis under .flywheel/redis, started when not running; it keeps its data
    there (append-only file), so a stop and a start keep the playbooks the mirror holds."""
    return embedded.start_redis(HOME / "redis", persist=True)


def recreate_demo_database(server_url: str) -> str:
    """Create flywheel_demo on the server of ``server_url`` (dropping an earlier demo's); its URL."""
    demo_url = db.parse_url(server_url).set(database=DEMO_DATABASE)
    admin = db.create_engine(db.parse_url(server_url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with db.connect(admin) as connection:
            marker = connection.execute(sa.text(
                "select shobj_description(oid, 'pg_database') from pg_database where datname = :name"
            ), {"name": DEMO_DATABASE}).one_or_none()
            if marker is not None and marker[0] != DEMO_MARKER:
                raise db.DatabaseUnavailable(
                    f"database {DEMO_DATABASE} exists on {db.mask(admin.url)} and was not made by the demo; "
                    "drop or rename it, or point FLYWHEEL_DATABASE_URL at another server"
                )
            if marker is not None:
                connection.execute(sa.text(f"drop database {DEMO_DATABASE} with (force)"))
            connection.execute(sa.text(f"create database {DEMO_DATABASE}"))
            connection.execute(sa.text(f"comment on database {DEMO_DATABASE} is '{DEMO_MARKER}'"))
    finally:
        admin.dispose()
    return demo_url.render_as_string(hide_password=False)


def run(database_url: str | None, redis_url: str | None, say: Callable[[str], None],
        progress: Callable[[int, str], Callable[[int], None]]) -> DemoServers:
    """Run the whole demo; return the URLs of the demo database and of Redis."""
    chosen = servers(database_url, redis_url)
    say(f"PostgreSQL: {db.mask(chosen.database_url)}")
    say(f"Redis:      {chosen.redis_url}")
    demo_url = recreate_demo_database(chosen.database_url)
    engine = db.create_engine(demo_url)
    try:
        size = generate.SIZES["demo"]
        update = progress(size.incidents + size.executions + size.knowledge_entries, "sample data")
        generate.generate(engine, size, progress=update)
        migrate.upgrade(engine)
        say("schema flywheel migrated to revision " + str(migrate.current_revision(engine)))
        say(load_playbooks(engine, chosen.redis_url, size.playbooks))
        result = refresh.refresh(engine)
        say(f"refreshed in {result.total_ms:.0f} ms")
        say("")
        say(summary.render(summary.summary_json(engine), summary.targets(engine)))
    finally:
        engine.dispose()
    return DemoServers(demo_url, chosen.redis_url, chosen.embedded)


def load_playbooks(engine: sa.Engine, redis_url: str, count: int) -> str:
    """Replace the demo's playbooks in Redis (a sample mix, two invalid), sync them once; what was done."""
    client = syncing.connect_redis(redis_url)
    pattern = DEMO_PLAYBOOK_PREFIX + "PB-*"
    try:
        for batch in syncing.scan_batches(client, pattern):
            client.delete(*batch)
        written = syncing.load_sample_playbooks(client, DEMO_PLAYBOOK_PREFIX, count, invalid=DEMO_INVALID_PLAYBOOKS)
        result = syncing.sync_pass(engine, client, pattern)
    finally:
        client.close()
    return f"{written} playbooks written to Redis under {pattern} ({DEMO_INVALID_PLAYBOOKS} invalid on purpose)\n{result.line()}"


def next_steps(demo: DemoServers) -> str:
    demo_url = demo.database_url
    url = make_url(demo_url)
    return "\n".join([
        "",
        "Try it yourself:",
        f"  {embedded.psql_binary()} '{db.libpq_url(demo_url)}' -c '\\d+ flywheel.*'",
        f"  export FLYWHEEL_DATABASE_URL='{db.libpq_url(demo_url)}'",
        f"  export FLYWHEEL_REDIS_URL='{demo.redis_url}'",
        "  .venv/bin/flywheel-sync summary --flywheel",
        "  .venv/bin/flywheel-sync sync --invalid      # the two invalid demo playbooks, with the reason",
        f"  .venv/bin/flywheel-sync sync --follow --pattern '{DEMO_PLAYBOOK_PREFIX}PB-*'",
        "Grafana: docs/grafana.md; its PostgreSQL datasource takes "
        f"host {url.host}:{url.port}, database {url.database}, user postgres (no password).",
        "Stop the embedded servers with: make stop",
    ])
