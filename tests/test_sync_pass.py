"""One sync pass against a real Redis and PostgreSQL: the table ends equal to Redis."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel_sync.local import embedded
from flywheel_sync.mirror import sync_pass as syncing
from tests.platform import add_playbook, mirror_of, playbook_value, refresh, set_setting, sync_log


@pytest.fixture
def engine(worker_engine):
    """The sync runs as the worker's login, granted only what docs/sync.md says (tests/conftest.py)."""
    return worker_engine


def run(engine, client, pattern, **options):
    return syncing.sync_pass(engine, client, pattern, **options)


def test_a_first_pass_inserts_every_record_with_its_fields(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value("approved", 41, 7, name="restart"))
    redis_client.set(playbook_key("PB-2"), playbook_value("draft", None, None))
    result = run(engine, redis_client, playbook_pattern)
    rows = mirror_of(engine)
    assert (result.complete, result.scanned, result.inserted, result.invalid) == (True, 2, 2, 0)
    first = rows[playbook_key("PB-1")]
    assert (first.playbook_id, first.status, first.success_count, first.failure_count, first.valid) == \
        ("PB-1", "approved", 41, 7, True)
    assert first.document["name"] == "restart"
    assert (rows[playbook_key("PB-2")].success_count, rows[playbook_key("PB-2")].failure_count) == (0, 0)


def row_version(engine, redis_key: bytes) -> str:
    with engine.connect() as connection:
        return connection.execute(sa.text("select xmin::text from flywheel.playbooks where redis_key = :key"),
                                  {"key": redis_key}).scalar_one()


def test_a_pass_over_unchanged_values_writes_nothing(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    run(engine, redis_client, playbook_pattern)
    before = row_version(engine, playbook_key("PB-1"))
    result = run(engine, redis_client, playbook_pattern)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 1)
    assert row_version(engine, playbook_key("PB-1")) == before


def test_an_unchanged_row_seen_longer_ago_than_the_resolution_gets_last_seen_bumped(
        engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    run(engine, redis_client, playbook_pattern)
    with engine.begin() as connection:
        connection.execute(sa.text("update flywheel.playbooks set last_seen_at = last_seen_at - :age"),
                           {"age": syncing.LAST_SEEN_RESOLUTION + timedelta(seconds=1)})
    before = mirror_of(engine)[playbook_key("PB-1")]
    run(engine, redis_client, playbook_pattern)
    after = mirror_of(engine)[playbook_key("PB-1")]
    assert after.last_seen_at > before.last_seen_at
    assert after.changed_at == before.changed_at


def test_a_changed_value_is_rewritten(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value("draft"))
    run(engine, redis_client, playbook_pattern)
    redis_client.set(playbook_key("PB-1"), playbook_value("approved", 3, 1))
    result = run(engine, redis_client, playbook_pattern)
    row = mirror_of(engine)[playbook_key("PB-1")]
    assert (result.updated, row.status, row.success_count, row.changed_at > row.first_seen_at) == (1, "approved", 3, True)


def test_a_deleted_key_loses_its_row(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    redis_client.set(playbook_key("PB-2"), playbook_value())
    run(engine, redis_client, playbook_pattern)
    redis_client.delete(playbook_key("PB-2"))
    result = run(engine, redis_client, playbook_pattern)
    assert result.deleted == 1
    assert set(mirror_of(engine)) == {playbook_key("PB-1")}


def test_a_renamed_key_moves_its_row(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    redis_client.set(playbook_key("PB-2"), playbook_value())  # a rename of the only row would delete all of them
    run(engine, redis_client, playbook_pattern)
    redis_client.rename(playbook_key("PB-1"), playbook_key("PB-9"))
    run(engine, redis_client, playbook_pattern)
    assert sorted(row.playbook_id for row in mirror_of(engine).values()) == ["PB-2", "PB-9"]


def test_a_key_deleted_and_recreated_between_passes_holds_the_new_value(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value("draft"))
    run(engine, redis_client, playbook_pattern)
    redis_client.delete(playbook_key("PB-1"))
    redis_client.set(playbook_key("PB-1"), playbook_value("approved"))
    run(engine, redis_client, playbook_pattern)
    assert mirror_of(engine)[playbook_key("PB-1")].status == "approved"


def test_a_key_that_became_a_hash_is_an_invalid_row(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    run(engine, redis_client, playbook_pattern)
    redis_client.delete(playbook_key("PB-1"))
    redis_client.hset(playbook_key("PB-1"), "status", "approved")
    result = run(engine, redis_client, playbook_pattern)
    row = mirror_of(engine)[playbook_key("PB-1")]
    assert (result.invalid, row.valid, row.invalid_reason) == (1, False, "key holds a Redis hash, not a string")


def test_a_key_that_stays_a_hash_is_not_rewritten(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.hset(playbook_key("PB-1"), "status", "approved")
    run(engine, redis_client, playbook_pattern)
    before = row_version(engine, playbook_key("PB-1"))
    result = run(engine, redis_client, playbook_pattern)
    assert (result.unchanged, result.invalid, row_version(engine, playbook_key("PB-1"))) == (1, 1, before)


def test_a_key_gone_between_scan_and_read_loses_its_row(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    run(engine, redis_client, playbook_pattern)
    redis_client.delete(playbook_key("PB-1"))
    result = syncing.apply_keys(engine, redis_client, [playbook_key("PB-1"), playbook_key("PB-2")], playbook_pattern)
    assert (result.deleted, mirror_of(engine)) == (1, {})


def test_a_key_expired_before_the_pass_loses_its_row(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value(), px=50)
    redis_client.set(playbook_key("PB-3"), playbook_value())  # so the expiry deletes half the mirror, not all
    run(engine, redis_client, playbook_pattern)
    redis_client.set(playbook_key("PB-2"), playbook_value())
    redis_client.pexpire(playbook_key("PB-1"), 1)
    time.sleep(0.01)
    run(engine, redis_client, playbook_pattern)
    assert set(mirror_of(engine)) == {playbook_key("PB-2"), playbook_key("PB-3")}


def test_invalid_records_are_kept_with_their_reason_and_count_in_no_metric(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value("approved", 5, 5))
    redis_client.set(playbook_key("PB-2"), playbook_value("approved", "forty", 1))
    redis_client.set(playbook_key("PB-3"), b"not json")
    result = run(engine, redis_client, playbook_pattern)
    invalid = {row.playbook_id: row.invalid_reason for row in syncing.invalid_rows(engine)}
    assert (result.complete, result.invalid) == (True, 2)
    assert invalid == {"PB-2": 'success_count is a string ("forty"), not a number',
                       "PB-3": "not JSON: Expecting value: line 1 column 1 (char 0)"}
    with engine.begin() as connection:
        summary = refresh(connection)
    assert summary["playbook_count"] == 1


def test_an_unchanged_invalid_record_still_counts_as_invalid(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), b"[]")
    run(engine, redis_client, playbook_pattern)
    assert run(engine, redis_client, playbook_pattern).invalid == 1


def test_keys_with_odd_bytes_are_kept_byte_for_byte(engine, redis_client, playbook_pattern, playbook_key):
    odd = playbook_key("PB-") + b"\xff\x00\xe6\x95\x85 \n"
    redis_client.set(odd, playbook_value())
    run(engine, redis_client, playbook_pattern)
    assert mirror_of(engine)[odd].playbook_id == "PB-\\xff\\x00\u6545 \n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.binary(max_size=200) | st.from_regex(rb'\A\{"status": ".*", "success_count": -?[0-9]{1,25}\}\Z'),
                       min_size=1, max_size=8))
def test_any_values_end_as_rows_equal_to_redis(engine, redis_client, playbook_pattern, playbook_key, values):
    keys = [playbook_key(f"PB-{number}") for number in range(len(values))]
    redis_client.delete(*[playbook_key(f"PB-{number}") for number in range(8)])
    redis_client.mset(dict(zip(keys, values)))
    result = run(engine, redis_client, playbook_pattern, allow_mass_delete=True)
    assert result.complete
    assert set(mirror_of(engine)) == set(keys)


def test_a_pass_records_itself_in_the_sync_log(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    result = run(engine, redis_client, playbook_pattern)
    with engine.connect() as connection:
        logged = sync_log(connection)[-1]
    assert (logged.sync_id, logged.mode, logged.complete, logged.scanned, logged.inserted) == \
        (result.sync_id, "pass", True, 1, 1)
    assert logged.finished_at >= logged.started_at


def test_a_pass_prunes_sync_log_rows_older_than_the_retention(engine, owner_engine, redis_client, playbook_pattern):
    with owner_engine.begin() as connection:
        set_setting(connection, "retention", "1 day")
        connection.execute(sa.text(
            "insert into flywheel.sync_log (started_at, mode, complete) values (now() - :age, 'pass', true)"
        ), {"age": timedelta(days=1, minutes=1)})
    run(engine, redis_client, playbook_pattern)
    with engine.connect() as connection:
        assert len(sync_log(connection)) == 1


def test_a_pass_cut_short_by_redis_deletes_nothing_and_says_so(engine, own_redis):
    client = redis.Redis.from_url(own_redis.url)
    syncing.load_sample_playbooks(client, "playbook:", 3 * syncing.SCAN_COUNT)
    assert run(engine, client, syncing.DEFAULT_PATTERN).complete
    stop_redis = lambda: embedded.stop(own_redis.folder)  # noqa: E731 - the test's one fault
    result = run(engine, client, syncing.DEFAULT_PATTERN, between_batches=stop_redis)
    assert not result.complete and result.error.startswith("Redis:")
    assert len(mirror_of(engine)) == 3 * syncing.SCAN_COUNT
    with engine.connect() as connection:
        logged = sync_log(connection)[-1]
    assert (logged.complete, logged.deleted, logged.error) == (False, 0, result.error)


def test_keys_named_by_events_are_not_deleted_by_the_pass(engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    run(engine, redis_client, playbook_pattern)
    redis_client.delete(playbook_key("PB-1"))
    result = run(engine, redis_client, playbook_pattern, protected=lambda: {playbook_key("PB-1")})
    assert (result.deleted, set(mirror_of(engine))) == (0, {playbook_key("PB-1")})


def test_a_pass_reads_redis_over_tls_with_a_password_and_a_database_number(engine, tls_redis_url):
    client = syncing.connect_redis(tls_redis_url)
    client.set(b"playbook:PB-1", playbook_value())
    result = run(engine, client, syncing.DEFAULT_PATTERN)
    assert (result.complete, set(mirror_of(engine))) == (True, {b"playbook:PB-1"})
    assert client.connection_pool.connection_kwargs["db"] == 3


def test_a_key_written_by_someone_else_during_a_pass_is_upserted_not_refused(
        engine, redis_client, playbook_pattern, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value("approved"))
    batch = syncing.read_batch(redis_client, [playbook_key("PB-1")], known={})  # the table was empty
    with engine.begin() as connection:  # a writer without the lock inserts the key meanwhile
        add_playbook(connection, "PB-1", status="draft")
        connection.execute(sa.text("update flywheel.playbooks set redis_key = :key"), {"key": playbook_key("PB-1")})
    inserted, updated, _, _ = syncing.write(engine, batch, syncing.key_prefix(playbook_pattern))
    assert (inserted, updated) == (0, 1)
    assert mirror_of(engine)[playbook_key("PB-1")].status == "approved"


def test_seen_keys_mark_known_rows_in_place_and_keep_only_new_keys():
    known = {b"playbook:PB-1": syncing.Known(b"h1", True, False), b"playbook:PB-2": syncing.Known(b"h2", True, False)}
    seen = syncing.SeenKeys(known)
    seen.add([b"playbook:PB-1", b"playbook:PB-9"])
    assert [key in seen for key in (b"playbook:PB-1", b"playbook:PB-9", b"playbook:PB-2")] == [True, True, False]
    assert seen.new == {b"playbook:PB-9"}
    assert list(seen.unseen()) == [b"playbook:PB-2"]
