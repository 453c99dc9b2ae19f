"""`make demo`'s path, on the test servers: sample data, migrate, playbooks, sync, refresh, summary."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flywheel_sync.local import demo, embedded
from flywheel_sync.mirror import sync_pass


def drop_demo_database_if_the_demo_made_it(databases) -> None:
    with databases.admin.connect() as connection:
        marker = connection.execute(sa.text(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = :name"
        ), {"name": demo.DEMO_DATABASE}).scalar()
        if marker == demo.DEMO_MARKER:
            connection.execute(sa.text(f"drop database {demo.DEMO_DATABASE} with (force)"))


def test_demo_runs_end_to_end_and_tells_how_to_connect(postgres_server_url, redis_server_url, databases):
    said: list[str] = []
    try:
        servers = demo.run(postgres_server_url, redis_server_url, said.append, lambda total, label: lambda rows: None)
        output = "\n".join(said)
        assert "schema flywheel migrated" in output and "2 invalid on purpose" in output
        assert "playbook_count" in output and "target >= 20" in output
        steps = demo.next_steps(servers)
        assert "export FLYWHEEL_DATABASE_URL=" in steps and "export FLYWHEEL_REDIS_URL=" in steps
    finally:
        client = sync_pass.connect_redis(redis_server_url)
        for batch in sync_pass.scan_batches(client, demo.DEMO_PLAYBOOK_PREFIX + "*"):
            client.delete(*batch)
        client.close()
        drop_demo_database_if_the_demo_made_it(databases)


def test_demo_refuses_a_database_it_did_not_make(postgres_server_url, databases):
    with databases.admin.connect() as connection:
        connection.execute(sa.text(f"create database {demo.DEMO_DATABASE}"))
    try:
        with pytest.raises(demo.db.DatabaseUnavailable, match="was not made by the demo"):
            demo.recreate_demo_database(postgres_server_url)
    finally:
        with databases.admin.connect() as connection:
            connection.execute(sa.text(f"drop database {demo.DEMO_DATABASE}"))


def test_the_demos_embedded_redis_keeps_its_playbooks_across_a_stop_and_a_start(tmp_path, monkeypatch):
    """`make stop` then `make demo` (or `flywheel-sync embedded start`): the playbooks are still
    there, so the next sync is not refused as a mass delete."""
    monkeypatch.chdir(tmp_path)
    client = sync_pass.connect_redis(demo.start_redis().url)
    client.set(f"{demo.DEMO_PLAYBOOK_PREFIX}PB-1", b'{"status": "approved"}')
    client.close()
    try:
        assert embedded.stop(demo.HOME / "redis")
        client = sync_pass.connect_redis(demo.start_redis().url)
        assert client.get(f"{demo.DEMO_PLAYBOOK_PREFIX}PB-1") == b'{"status": "approved"}'
        client.close()
    finally:
        embedded.stop(demo.HOME / "redis")
