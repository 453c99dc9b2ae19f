"""The sync against what production throws at it (issue 10): records PostgreSQL refuses, a pattern
typo, values far over the size limit. A pass never fails for one key, and never wipes the mirror."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from flywheel_sync.cli import cli
from flywheel_sync.mirror import validation
from flywheel_sync.mirror import sync_pass as syncing
from tests.cli import error_line
from tests.platform import eventually, mirror_of, playbook_value, sync_log

BIGINT_MAX = 2**63 - 1


@pytest.fixture
def engine(worker_engine):
    """The sync runs as the worker's login, granted only what docs/sync.md says (tests/conftest.py)."""
    return worker_engine


def totals_and_recount(engine) -> tuple[sa.Row, sa.Row]:
    with engine.connect() as connection:
        kept = connection.execute(sa.text(
            "select approved, invalid, approved_runs, approved_successes from flywheel.playbook_totals")).one()
        counted = connection.execute(sa.text(
            "select count(*) filter (where valid and status = 'approved'), count(*) filter (where not valid),"
            " coalesce(sum(success_count + failure_count) filter (where valid and status = 'approved'), 0),"
            " coalesce(sum(success_count) filter (where valid and status = 'approved'), 0) from flywheel.playbooks")).one()
    return tuple(kept), tuple(counted)


@pytest.mark.parametrize("number, storable", [
    ("1e-16383", True), ("5e-16383", True), ("1e-16384", False), ("1.0e-16383", False), ("0e-16384", False),
])
def test_a_number_is_valid_exactly_when_postgresql_can_store_it_in_jsonb(engine, number, storable):
    record = validation.validate(b'{"status": "approved", "x": %s}' % number.encode())
    with engine.connect() as connection:
        try:
            connection.execute(sa.text("select cast(:document as jsonb)"), {"document": f'{{"x": {number}}}'})
            stored = True
        except sa.exc.DataError:
            stored = False
    assert (record.valid, stored) == (storable, storable)
    if not storable:
        assert record.invalid_reason.startswith(f"holds a number PostgreSQL cannot store ({number}")


def test_counts_whose_sum_is_beyond_bigint_are_invalid():
    at_limit = validation.validate(playbook_value("approved", BIGINT_MAX - 1, 1))
    beyond = validation.validate(playbook_value("approved", BIGINT_MAX, 1))
    assert at_limit.valid
    assert beyond.invalid_reason == "success_count + failure_count is beyond bigint (9223372036854775807)"


def test_a_record_postgresql_refuses_is_an_invalid_row_and_the_rest_of_its_batch_is_written(
        engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value("approved", 5, 1))
    redis_client.set(playbook_key("PB-2"), b'{"status": "approved", "x": 1e-16384}')
    redis_client.set(playbook_key("PB-3"), playbook_value("draft"))
    result = syncing.sync_pass(engine, redis_client, playbook_pattern)
    rows = mirror_of(engine)
    assert (result.complete, result.inserted, result.invalid) == (True, 3, 1)
    assert rows[playbook_key("PB-2")].invalid_reason.startswith("holds a number PostgreSQL cannot store")
    assert rows[playbook_key("PB-1")].valid and rows[playbook_key("PB-3")].valid


def test_a_record_whose_counts_would_take_the_totals_beyond_bigint_is_invalid_and_the_totals_stay_exact(
        engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value("approved", BIGINT_MAX, 0))
    redis_client.set(playbook_key("PB-2"), playbook_value("approved", 1, 0))
    result = syncing.sync_pass(engine, redis_client, playbook_pattern)
    reasons = sorted(row.invalid_reason or "" for row in mirror_of(engine).values())
    assert (result.complete, result.inserted, result.invalid) == (True, 2, 1)
    assert reasons[0] == "" and reasons[1].startswith("its counts would take the mirror's totals beyond bigint")
    kept, counted = totals_and_recount(engine)
    assert kept == counted


def test_a_refused_record_leaves_every_pass_complete_with_deletions_applied(
        engine, redis_client, playbook_pattern, playbook_key):
    for number in range(1, 4):
        redis_client.set(playbook_key(f"PB-{number}"), playbook_value())
    syncing.sync_pass(engine, redis_client, playbook_pattern)
    redis_client.delete(playbook_key("PB-3"))
    redis_client.set(playbook_key("PB-4"), playbook_value("approved", BIGINT_MAX, 0))
    redis_client.set(playbook_key("PB-5"), playbook_value("approved", BIGINT_MAX, 0))
    result = syncing.sync_pass(engine, redis_client, playbook_pattern)
    with engine.connect() as connection:
        logged = sync_log(connection)[-1]
    assert (result.complete, result.deleted, result.invalid) == (True, 1, 1)
    assert (logged.complete, logged.finished_at is not None, logged.deleted) == (True, True, 1)
    assert playbook_key("PB-3") not in mirror_of(engine)


def test_a_key_postgresql_cannot_store_even_as_an_invalid_row_is_counted_and_named(
        engine, redis_client, playbook_pattern, playbook_key):
    too_long = playbook_key("PB-") + os.urandom(9000)  # beyond the row size of the primary key's index
    redis_client.set(too_long, playbook_value())
    redis_client.set(playbook_key("PB-1"), playbook_value())
    result = syncing.sync_pass(engine, redis_client, playbook_pattern)
    assert (result.complete, result.inserted, result.invalid) == (True, 1, 1)
    assert result.error.startswith("1 key(s) PostgreSQL cannot store even as an invalid row")
    assert set(mirror_of(engine)) == {playbook_key("PB-1")}


def test_a_pass_that_fails_on_postgresql_still_finishes_its_sync_log_row(
        engine, owner_engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    with owner_engine.begin() as connection:
        connection.execute(sa.text("revoke insert on flywheel.playbooks from flywheel_refresher"))
    with pytest.raises(Exception, match="permission denied"):
        syncing.sync_pass(engine, redis_client, playbook_pattern)
    with owner_engine.connect() as connection:
        logged = sync_log(connection)[-1]
    assert (logged.complete, logged.finished_at is not None) == (False, True)
    assert logged.error.startswith("failed: permission denied")


def test_the_worker_keeps_running_when_an_event_names_a_record_postgresql_refuses(
        engine, redis_client, redis_server_url, playbook_pattern, playbook_key, start_worker, keyspace_events_restored):
    running = start_worker(engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: running.log.events("subscribed") and running.log.events("reconciled"))
    redis_client.set(playbook_key("PB-1"), playbook_value("approved", BIGINT_MAX, 0))
    redis_client.set(playbook_key("PB-2"), playbook_value("approved", BIGINT_MAX, 0))
    assert eventually(lambda: len(mirror_of(engine)) == 2, seconds=5)
    assert running.thread.is_alive() and running.failure is None
    assert sorted(row.valid for row in mirror_of(engine).values()) == [False, True]


@pytest.fixture
def mirrored_four(engine, redis_client, playbook_pattern, playbook_key):
    """Four records in Redis and in the mirror."""
    for number in range(1, 5):
        redis_client.set(playbook_key(f"PB-{number}"), playbook_value())
    assert syncing.sync_pass(engine, redis_client, playbook_pattern).inserted == 4


def sync_cli(worker_url, redis_server_url, *arguments):
    environment = {"FLYWHEEL_DATABASE_URL": worker_url, "FLYWHEEL_REDIS_URL": redis_server_url}
    return CliRunner().invoke(cli, ["sync", *arguments], env=environment)


def test_a_pattern_that_matches_nothing_deletes_nothing_and_says_why(
        engine, mirrored_four, worker_url, redis_server_url, redis_prefix):
    result = sync_cli(worker_url, redis_server_url, "--pattern", f"{redis_prefix}x:*")
    assert result.exit_code == 1
    assert "mass delete refused: the pass would delete 4 of the 4 rows of the mirror (more than 50%)" in result.output
    assert len(mirror_of(engine)) == 4
    with engine.connect() as connection:
        logged = sync_log(connection)[-1]
    assert (logged.complete, logged.deleted) == (False, 0) and logged.error.startswith("mass delete refused")


def test_a_refused_mass_delete_says_why_once(engine, mirrored_four, worker_url, redis_server_url, redis_prefix):
    result = sync_cli(worker_url, redis_server_url, "--pattern", f"{redis_prefix}x:*")
    assert result.exit_code == 1 and result.output.count("mass delete refused") == 1, result.output


def test_a_pass_may_delete_half_the_mirror_but_not_more(engine, mirrored_four, redis_client, playbook_pattern,
                                                         playbook_key):
    redis_client.delete(playbook_key("PB-1"), playbook_key("PB-2"))
    assert syncing.sync_pass(engine, redis_client, playbook_pattern).deleted == 2
    redis_client.delete(playbook_key("PB-3"), playbook_key("PB-4"))
    assert syncing.sync_pass(engine, redis_client, playbook_pattern).error.startswith("mass delete refused")


def test_allow_mass_delete_empties_the_mirror_when_redis_is_empty(
        engine, mirrored_four, redis_client, worker_url, redis_server_url, playbook_pattern, playbook_key):
    redis_client.delete(*[playbook_key(f"PB-{number}") for number in range(1, 5)])
    result = sync_cli(worker_url, redis_server_url, "--pattern", playbook_pattern, "--allow-mass-delete")
    assert result.exit_code == 0, result.output
    assert mirror_of(engine) == {}


def test_the_worker_refusing_a_mass_delete_says_so_and_keeps_applying_events(
        engine, mirrored_four, redis_client, redis_server_url, playbook_pattern, playbook_key, start_worker,
        keyspace_events_restored):
    redis_client.delete(*[playbook_key(f"PB-{number}") for number in range(2, 5)])
    running = start_worker(engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: running.log.events("mass_delete_refused") and running.log.events("subscribed"))
    redis_client.set(playbook_key("PB-9"), playbook_value())
    assert eventually(lambda: playbook_key("PB-9") in mirror_of(engine), seconds=5)
    assert running.failure is None and len(mirror_of(engine)) == 5


def test_a_value_over_the_limit_is_invalid_without_being_fetched(engine, redis_client, playbook_pattern, playbook_key):
    size = validation.MAX_VALUE_BYTES + 1
    redis_client.set(playbook_key("PB-1"), b'{"status": "approved", "pad": "' + b"x" * size + b'"}')
    redis_client.set(playbook_key("PB-2"), playbook_value())
    before = redis_client.info("stats")["total_net_output_bytes"]
    result = syncing.sync_pass(engine, redis_client, playbook_pattern)
    sent = redis_client.info("stats")["total_net_output_bytes"] - before
    row = mirror_of(engine)[playbook_key("PB-1")]
    assert (result.complete, result.invalid) == (True, 1)
    assert row.invalid_reason == f"value is {size + 33:,} bytes, more than the 1,048,576 allowed"
    assert row.raw_excerpt.startswith('{"status": "approved", "pad": "xxx')
    assert sent < size / 10
