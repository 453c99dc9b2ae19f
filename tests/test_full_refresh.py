"""The full refresh puts every row into its day in the timezone, across changes of UTC offset, with
the fixed-offset day key of flywheel.local_day_key_sql."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.platform import AS_OF, add_execution, add_incident, add_knowledge_entry, set_setting

# Daylight saving time (New York, Santiago whose clocks change at midnight, Lord Howe's half-hour
# change), half-hour and quarter-hour offsets, and Casablanca, whose offset changes around Ramadan.
ZONES = ["Asia/Taipei", "America/New_York", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu",
         "Australia/Adelaide", "Africa/Casablanca", "Europe/London", "UTC"]
DAYS = ("daily_incidents", "daily_executions", "daily_knowledge")


def wrong_days(connection: sa.Connection, zone: str, instants_sql: str, key_from: str, key_to: str) -> list:
    expression = connection.execute(sa.text("select flywheel.local_day_key_sql('created_at', :zone, :from, :to)"),
                                    {"zone": zone, "from": key_from, "to": key_to}).scalar_one()
    return connection.execute(sa.text(f"""
        select created_at from ({instants_sql}) as instant (created_at)
        where ({expression}) is distinct from
              ((created_at at time zone :zone)::date)::timestamp at time zone 'UTC'
    """), {"zone": zone}).scalars().all()


@pytest.mark.parametrize("zone", ZONES)
def test_day_key_is_the_local_date_a_microsecond_either_side_of_every_hour(connection, zone):
    # Every change of offset and every midnight falls on a whole hour, half hour or quarter hour.
    instants = """
        select quarter + shift
        from generate_series(timestamptz '2024-12-25 00:00+00', timestamptz '2027-01-05 00:00+00',
                             interval '15 minutes') as quarter
        cross join (values (interval '0'), (interval '-1 microsecond'), (interval '1 microsecond')) as s (shift)
    """
    assert wrong_days(connection, zone, instants, "2025-01-01", "2026-12-31") == []


def test_day_key_leaves_rows_outside_its_range_and_null_to_the_exact_conversion(connection):
    instants = """
        select * from (values (timestamptz '1960-06-01 03:00+00'), (timestamptz '2100-03-01 23:30+00'),
                              (timestamptz 'infinity'), (null::timestamptz)) as v
    """
    assert wrong_days(connection, "America/New_York", instants, "2026-01-01", "2026-12-31") == []


def test_day_key_without_a_range_is_the_exact_conversion(connection):
    expression = connection.execute(sa.text(
        "select flywheel.local_day_key_sql('created_at', 'Asia/Taipei', null, null)")).scalar_one()
    assert "date_bin" not in expression


def rollups(connection: sa.Connection) -> dict[str, list]:
    return {table: connection.execute(sa.text(
        f"select to_jsonb(row) - 'refreshed_at' - 'day_start' from flywheel.{table} as row order by day")).scalars().all()
        for table in DAYS}


def rollups_by_plain_grouping(connection: sa.Connection, zone: str) -> dict[str, list]:
    """The rollups as metrics.md defines them, grouping by each row's date in the zone."""
    incidents = connection.execute(sa.text("""
        select jsonb_build_object(
            'day', day, 'incidents_created', count(*),
            'alertname_missing', count(*) filter (where alertname is null or btrim(alertname, E' \\t\\r\\n') = ''),
            'status_investigating', count(*) filter (where status = 'investigating'),
            'status_mitigating', count(*) filter (where status = 'mitigating'),
            'status_resolved', count(*) filter (where status = 'resolved'),
            'status_closed', count(*) filter (where status = 'closed'),
            'status_other', count(*) filter (where status not in ('investigating', 'mitigating', 'resolved', 'closed')),
            'execution_success', count(*) filter (where outcome ->> 'execution_success' = 'true'))
        from (select (created_at at time zone :zone)::date as day, * from incidents) as incident
        group by day order by day
    """), {"zone": zone}).scalars().all()
    executions = connection.execute(sa.text("""
        select jsonb_build_object('day', day, 'executions', count(*), 'successes', count(*) filter (where success))
        from (select (created_at at time zone :zone)::date as day, * from auto_repair_executions) as execution
        group by day order by day
    """), {"zone": zone}).scalars().all()
    knowledge = connection.execute(sa.text("""
        select jsonb_build_object('day', day, 'entries_created', count(*),
                                  'entries_unvectorized', count(*) filter (where embedding is null))
        from (select (created_at at time zone :zone)::date as day, * from knowledge_entries) as entry
        group by day order by day
    """), {"zone": zone}).scalars().all()
    return {"daily_incidents": incidents, "daily_executions": executions, "daily_knowledge": knowledge}


@pytest.mark.parametrize("zone", ["America/New_York", "America/Santiago", "Australia/Lord_Howe"])
def test_full_refresh_rollups_equal_grouping_by_local_date_across_changes_of_offset(connection, zone):
    set_setting(connection, "timezone", zone)
    # Rows every 20 minutes and a microsecond before each hour, from March to November 2026: both of
    # the year's changes of offset in each of these zones, and hundreds of midnights.
    moment = datetime(2026, 3, 1, tzinfo=timezone.utc)
    statuses = ["investigating", "mitigating", "resolved", "closed", "escalated"]
    number = 0
    while moment < datetime(2026, 11, 20, tzinfo=timezone.utc):
        for instant in (moment, moment + timedelta(minutes=20), moment + timedelta(minutes=40),
                        moment + timedelta(hours=1) - timedelta(microseconds=1)):
            number += 1
            add_incident(connection, created_at=instant, status=statuses[number % 5],
                         alertname=[None, " ", "HighCPU"][number % 3],
                         outcome={"execution_success": [True, "true", False][number % 3]})
            add_execution(connection, created_at=instant, success=[True, False, None][number % 3])
        if moment.hour % 6 == 0:
            add_knowledge_entry(connection, vectorized=moment.hour % 12 == 0, created_at=moment)
        moment += timedelta(hours=1)
    result = connection.execute(sa.text("select flywheel.refresh(:as_of, full => true)"), {"as_of": AS_OF}).scalar_one()
    assert result["status"] == "ok", result
    assert rollups(connection) == rollups_by_plain_grouping(connection, zone)
