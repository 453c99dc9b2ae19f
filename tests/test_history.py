"""History in tiers (issue 13): snapshots that reference a settings version instead of copying the
settings, tiers of 1-minute, 5-minute, 1-hour, 6-hour and 12-hour buckets folded in by every refresh and pruned
after their own retention, and panels that draw the same series from whichever tier flywheel.history()
picks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from flywheel_sync.database import db, migrate
from flywheel_sync.local import generate
from flywheel_sync.outputs import grafana
from tests.grafana_macros import TimeRange, expand
from tests.platform import AS_OF, DAY, HOUR, MINUTE, add_incident, add_knowledge_entry, refresh, set_setting

SECOND = timedelta(seconds=1)
# A moment on an hour boundary (so on a minute boundary too) before AS_OF.
ON_THE_HOUR = datetime(2026, 11, 28, 7, 0, tzinfo=timezone.utc)

WIDTHS = {"minute": "1 minute", "5 minutes": "5 minutes", "hour": "1 hour", "6 hours": "6 hours",
          "12 hours": "12 hours"}


def tier_rows(connection: sa.Connection, tier: str) -> list[tuple]:
    return [tuple(row) for row in connection.execute(sa.text(
        "select bucket_start, snapshots, last_computed_at from flywheel.history_buckets"
        " where bucket_width = cast(:width as interval) order by 1"), {"width": WIDTHS[tier]})]


def snapshot_times(connection: sa.Connection) -> list[datetime]:
    return connection.execute(sa.text("select computed_at from flywheel.snapshots order by 1")).scalars().all()


def test_a_snapshot_exactly_on_a_six_hour_boundary_opens_its_bucket_of_every_width(connection):
    on_six_hours = ON_THE_HOUR - HOUR
    for as_of in (on_six_hours - SECOND, on_six_hours, on_six_hours + 59 * SECOND):
        refresh(connection, as_of)
    for tier, width in (("minute", MINUTE), ("5 minutes", 5 * MINUTE), ("hour", HOUR), ("6 hours", 6 * HOUR)):
        assert tier_rows(connection, tier) == [(on_six_hours - width, 1, on_six_hours - SECOND),
                                               (on_six_hours, 2, on_six_hours + 59 * SECOND)], tier


def test_a_tier_row_is_the_aggregate_of_its_snapshots_whatever_order_they_come_in(connection):
    add_incident(connection, status="investigating", created_at=AS_OF - 2 * DAY)
    refresh(connection, ON_THE_HOUR + 40 * SECOND)
    add_incident(connection, status="investigating", created_at=AS_OF - 2 * DAY)
    add_knowledge_entry(connection, vectorized=False, created_at=AS_OF - 2 * DAY)
    refresh(connection, ON_THE_HOUR + 50 * SECOND)
    # A back-fill into the same minute, earlier than both: it must not become the row's newest.
    refresh(connection, ON_THE_HOUR + 10 * SECOND)
    expected = connection.execute(sa.text("""
        select count(*), max(computed_at), sum(km_vectorized_rate), sum(alertname_null_rate),
               min(playbook_count), max(incidents_stuck), max(km_unvectorized_count), max(today_processed)
        from flywheel.snapshots""")).one()
    for tier in WIDTHS.values():
        row = connection.execute(sa.text("""
            select snapshots, last_computed_at, km_vectorized_rate_sum, alertname_null_rate_sum,
                   playbook_count_min, incidents_stuck_max, km_unvectorized_count_max, today_processed_max
            from flywheel.history_buckets where bucket_width = cast(:width as interval)"""), {"width": tier}).one()
        assert tuple(row[:2]) == tuple(expected[:2]) and tuple(row[2:]) == pytest.approx(tuple(expected[2:])), tier
    assert expected[0] == 3 and expected[5] == 2


def test_each_tier_keeps_a_row_exactly_at_its_retention_and_prunes_older_ones(connection):
    set_setting(connection, "history_raw_retention", "1 hour")
    set_setting(connection, "history_1m_retention", "1 day")
    set_setting(connection, "history_1h_retention", "2 days")
    for as_of in (ON_THE_HOUR - 2 * DAY - HOUR, ON_THE_HOUR - 2 * DAY, ON_THE_HOUR - DAY - MINUTE, ON_THE_HOUR - DAY,
                  ON_THE_HOUR - HOUR - MINUTE, ON_THE_HOUR - HOUR, ON_THE_HOUR):
        refresh(connection, as_of)
    assert snapshot_times(connection) == [ON_THE_HOUR - HOUR, ON_THE_HOUR]
    assert [row[0] for row in tier_rows(connection, "minute")] == [
        ON_THE_HOUR - DAY, ON_THE_HOUR - HOUR - MINUTE, ON_THE_HOUR - HOUR, ON_THE_HOUR]
    assert [row[0] for row in tier_rows(connection, "hour")] == [
        ON_THE_HOUR - 2 * DAY, ON_THE_HOUR - DAY - HOUR, ON_THE_HOUR - DAY, ON_THE_HOUR - 2 * HOUR,
        ON_THE_HOUR - HOUR, ON_THE_HOUR]


def test_a_settings_change_between_two_snapshots_gives_each_the_settings_it_was_computed_with(connection):
    refresh(connection, AS_OF - 2 * MINUTE)
    refresh(connection, AS_OF - MINUTE)
    set_setting(connection, "dedup_window_min", 45)
    refresh(connection, AS_OF)
    rows = connection.execute(sa.text("""
        select snapshot.computed_at, version.settings -> 'dedup_window_min'
        from flywheel.snapshots as snapshot
        join flywheel.settings_versions as version using (settings_version_id)
        order by snapshot_id""")).all()
    assert [tuple(row) for row in rows] == [(AS_OF - 2 * MINUTE, 30), (AS_OF - MINUTE, 30), (AS_OF, 45)]
    assert connection.execute(sa.text("select count(*) from flywheel.settings_versions")).scalar_one() == 2
    assert connection.execute(sa.text("select settings -> 'dedup_window_min' from flywheel.summary")).scalar_one() == 45
    nodes = connection.execute(sa.text("select flywheel.flywheel_json() -> 'nodes'")).scalar_one()
    assert nodes["deduplication"]["dedup_window_min"] == 45


def test_a_settings_version_no_snapshot_uses_is_pruned_with_its_snapshots(connection):
    set_setting(connection, "history_raw_retention", "1 hour")
    refresh(connection, AS_OF - 2 * HOUR)
    set_setting(connection, "dedup_window_min", 45)
    refresh(connection, AS_OF - 90 * MINUTE)
    refresh(connection, AS_OF)
    versions = connection.execute(sa.text(
        "select settings -> 'dedup_window_min' from flywheel.settings_versions")).scalars().all()
    assert versions == [45]


def history_rows_read(connection: sa.Connection) -> int:
    """Rows of flywheel.history_buckets this transaction has read so far, by scans of any kind."""
    return connection.execute(sa.text(
        "select seq_tup_read + coalesce(idx_tup_fetch, 0) from pg_stat_xact_user_tables"
        " where relid = 'flywheel.history_buckets'::regclass")).scalar_one()


def test_pruning_the_tiers_reads_the_buckets_it_removes_not_every_bucket_kept(connection):
    """Each refresh prunes every tier. Kept for their default retentions at one refresh every few
    seconds, the tiers hold some 37,000 buckets; a prune that joined them all with the tiers read every
    one of them at every refresh (12 ms at S in release 0007)."""
    refresh(connection, ON_THE_HOUR)
    connection.execute(sa.text("""
        insert into flywheel.history_buckets
        select bucket.bucket_width, bucket.bucket_start - bucket.bucket_width * older.steps,
               bucket.snapshots, bucket.last_computed_at - bucket.bucket_width * older.steps,
               bucket.execution_success_rate_sum, bucket.execution_success_rate_samples,
               bucket.km_vectorized_rate_sum, bucket.alertname_null_rate_sum, bucket.playbook_count_min,
               bucket.playbooks_invalid_max, bucket.km_unvectorized_count_max, bucket.incidents_stuck_max,
               bucket.type4_count_max, bucket.count_1h_max, bucket.today_processed_max,
               bucket.execution_success_today_max, bucket.flywheel_conversions_today_max, bucket.refresh_ms_max
        from flywheel.history_buckets as bucket
        cross join lateral generate_series(1, case bucket.bucket_width when interval '1 minute' then 11000
                                                                       when interval '1 hour' then 8000
                                                                       else 1000 end) as older(steps)"""))
    connection.execute(sa.text("analyze flywheel.history_buckets"))
    # Past the five runs after which PostgreSQL may plan a PL/pgSQL statement once for the session.
    for minutes in range(1, 7):
        refresh(connection, ON_THE_HOUR + minutes * MINUTE)
    read_before = history_rows_read(connection)
    refresh(connection, ON_THE_HOUR + 7 * MINUTE)
    # The refresh folds its snapshot into one bucket of each of the five tiers, and removes none.
    assert history_rows_read(connection) - read_before < 100

@pytest.mark.parametrize("interval_ms, range_from, width", [
    (59999, "1 hour", timedelta(0)),
    (60000, "1 hour", MINUTE),
    (299999, "1 hour", MINUTE),
    (300000, "1 hour", 5 * MINUTE),
    (3599999, "1 hour", 5 * MINUTE),
    (3600000, "1 hour", HOUR),
    (21600000, "1 hour", 6 * HOUR),
    (43199999, "1 hour", 6 * HOUR),
    (43200000, "1 hour", 12 * HOUR),
    (86400000, "1 hour", 12 * HOUR),
    (59999, "2 days", MINUTE),
    (60000, "9 days", 5 * MINUTE),
    (60000, "46 days", HOUR),
    (3600000, "2 years", 6 * HOUR),
    (60000, "11 years", 12 * HOUR),
])
def test_history_reads_the_coarsest_tier_no_coarser_than_the_interval_that_holds_the_range(
        connection, interval_ms, range_from, width):
    """With the default retentions: raw 1 day, 1 minute 8 days, 5 minutes 45 days, 1 hour 1 year, 6 and 12 hours
    10 years."""
    chosen = connection.execute(sa.text("select flywheel.history_tier(now() - cast(:ago as interval), :interval_ms)"),
                                {"ago": range_from, "interval_ms": interval_ms}).scalar_one()
    assert chosen == width


SERIES_PANELS = [panel for panel in grafana.dashboard()["panels"]
                 if "flywheel.history(" in panel.get("targets", [{}])[0].get("rawSql", "")]
HISTORY_CALL = "flywheel.history($__timeFrom(), $__timeTo(), $__interval_ms)"
RAW_CALL = "flywheel.history($__timeFrom(), $__timeTo(), 1)"


def _two_hours_of_snapshots(connection: sa.Connection) -> None:
    """A snapshot every 20 s for two hours from ON_THE_HOUR, every drawn metric moving, each folded into the
    tiers as the refresh folds it; every tier kept, so that history() may read any of them."""
    for key in ("history_raw_retention", "history_1m_retention", "history_5m_retention", "history_1h_retention"):
        set_setting(connection, key, "100 years")
    connection.execute(sa.text("""
        do $fill$
        declare
            step integer;
            moment timestamptz;
        begin
            for step in 0 .. 359 loop
                moment := to_timestamp(%d) + step * interval '20 seconds';
                insert into flywheel.snapshots (
                    computed_at, timezone, playbook_count, playbooks_invalid,
                    execution_success_rate, execution_success_rate_source, execution_success_sample,
                    executions_24h, executions_7d, km_total, km_unvectorized_count, km_vectorized_rate,
                    km_created_24h, flywheel_conversions_today, incidents_total, incidents_alertname_missing,
                    alertname_null_rate, incidents_investigating, incidents_mitigating, incidents_stuck,
                    type4_count, today_processed, count_1h, execution_success_today, settings_version_id, refresh_ms)
                values (
                    moment, 'Asia/Taipei', 20 + step % 13, step % 5,
                    case when step % 7 = 0 then null else step % 11 / 10.0 end,
                    case when step % 7 = 0 then 'insufficient' else '24h' end, 10,
                    10, 10, 100, step % 23, step % 17 / 16.0,
                    0, step / 7, 100, 0,
                    step % 19 / 18.0, 0, 0, step % 3,
                    step % 4, step / 3, step % 29, step / 5, flywheel.settings_version(moment), step % 31 * 1.5);
                perform flywheel.record_history(moment);
            end loop;
        end
        $fill$""".replace("%d", str(int(ON_THE_HOUR.timestamp())))))


def test_panels_draw_the_same_series_from_a_tier_as_from_the_raw_snapshots(connection):
    _two_hours_of_snapshots(connection)
    time_range = TimeRange(ON_THE_HOUR, ON_THE_HOUR + 2 * HOUR - SECOND)
    for panel in SERIES_PANELS:
        sql = panel["targets"][0]["rawSql"]
        assert HISTORY_CALL in sql, panel["title"]
        for interval, width in ((2 * MINUTE, MINUTE), (15 * MINUTE, 5 * MINUTE), (HOUR, HOUR)):
            interval_ms = interval // timedelta(milliseconds=1)
            assert connection.execute(sa.text("select flywheel.history_tier(:start, :interval_ms)"),
                                      {"start": time_range.start, "interval_ms": interval_ms}).scalar_one() == width
            from_tier = connection.execute(sa.text(expand(sql, time_range, interval))).all()
            from_raw = connection.execute(sa.text(expand(sql.replace(HISTORY_CALL, RAW_CALL), time_range,
                                                         interval))).all()
            assert len(from_tier) == 2 * HOUR // interval, (panel["title"], width)
            assert [row[0] for row in from_tier] == [row[0] for row in from_raw], (panel["title"], width)
            assert [tuple(row[1:]) for row in from_tier] == [pytest.approx(tuple(row[1:])) for row in from_raw], \
                (panel["title"], width)


@pytest.fixture
def engine_at_0005(empty_database_url):
    """A database at revision 0005 with four snapshots around ON_THE_HOUR, the settings changed before the
    third and changed back before the fourth."""
    engine = db.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        generate.create_reference_schema(connection, layout="plain")
    migrate.upgrade(engine, "0005")
    with engine.begin() as connection:
        refresh(connection, ON_THE_HOUR - HOUR + 30 * SECOND)
        refresh(connection, ON_THE_HOUR)
        set_setting(connection, "dedup_window_min", 45)
        refresh(connection, ON_THE_HOUR + 30 * SECOND)
        set_setting(connection, "dedup_window_min", 30)
        refresh(connection, ON_THE_HOUR + 45 * SECOND)
    yield engine
    engine.dispose()


SETTINGS_COPIES = "select snapshot_id, settings from flywheel.snapshots order by snapshot_id"
OUTPUTS = "select flywheel.summary_json(), flywheel.flywheel_json(), (select settings from flywheel.summary)"


def test_upgrade_to_0006_turns_settings_copies_into_versions_and_fills_the_tiers(engine_at_0005):
    with engine_at_0005.connect() as connection:
        before = connection.execute(sa.text(SETTINGS_COPIES)).all()
        outputs_before = connection.execute(sa.text(OUTPUTS)).one()
    migrate.upgrade(engine_at_0005)
    with engine_at_0005.connect() as connection:
        after = connection.execute(sa.text("""
            select snapshot_id, version.settings
            from flywheel.snapshots join flywheel.settings_versions as version using (settings_version_id)
            order by snapshot_id""")).all()
        assert after == before
        # One version per run of equal settings, in snapshot order: what the refresh's pruning relies on.
        versions = connection.execute(sa.text(
            "select settings_version_id from flywheel.snapshots order by snapshot_id")).scalars().all()
        assert versions == [1, 1, 2, 3]
        assert connection.execute(sa.text(OUTPUTS)).one() == outputs_before
        for tier in ("minute", "5 minutes", "hour"):
            assert tier_rows(connection, tier) == [(ON_THE_HOUR - HOUR, 1, ON_THE_HOUR - HOUR + 30 * SECOND),
                                                   (ON_THE_HOUR, 3, ON_THE_HOUR + 45 * SECOND)], tier
        assert tier_rows(connection, "6 hours") == [(ON_THE_HOUR - HOUR, 4, ON_THE_HOUR + 45 * SECOND)]
        # The next refresh continues the numbering (the settings gained the retentions) and prunes every
        # version the upgrade wrote once no snapshot uses it.
        set_setting(connection, "history_raw_retention", "1 hour")
        refresh(connection, ON_THE_HOUR + 2 * HOUR)
        assert connection.execute(sa.text(
            "select settings_version_id from flywheel.settings_versions")).scalars().all() == [4]


def test_downgrade_to_0005_puts_the_settings_copies_back_and_drops_the_tiers(engine_at_0005):
    with engine_at_0005.connect() as connection:
        before = connection.execute(sa.text(SETTINGS_COPIES)).all()
    migrate.upgrade(engine_at_0005)
    migrate.downgrade(engine_at_0005, "0005")
    with engine_at_0005.connect() as connection:
        assert connection.execute(sa.text(SETTINGS_COPIES)).all() == before
        assert connection.execute(sa.text(
            "select count(*) from flywheel.settings where key like 'history%'")).scalar_one() == 0
        assert connection.execute(sa.text(
            "select to_regclass('flywheel.history_buckets'), to_regclass('flywheel.settings_versions')")).one() == (None, None)
