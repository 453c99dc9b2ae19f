"""The incremental refresh gives what a full recomputation gives, falls back to full when it must,
and says why; each release installs and uninstalls cleanly."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel_sync.cli import cli
from flywheel_sync.database import check, db, migrate
from flywheel_sync.database import refresh as refreshing
from flywheel_sync.errors import RefreshBusy
from flywheel_sync.local import generate
from tests.platform import (AS_OF, DAY, HOUR, MINUTE, add_execution, add_incident, add_knowledge_entry, add_playbook,
                            set_setting, summary_row)

ROLLUPS = ("daily_incidents", "daily_executions", "daily_knowledge", "current_flow")
LOOKBACK = timedelta(minutes=10)


def run_refresh(connection: sa.Connection, as_of: datetime = AS_OF, full: bool = False) -> dict:
    result = connection.execute(sa.text("select flywheel.refresh(:as_of, full => :full)"),
                                {"as_of": as_of, "full": full}).scalar_one()
    assert result["status"] == "ok", result
    return result


def results(connection: sa.Connection) -> dict:
    """Everything a reader sees, without the columns that only say which refresh wrote a row."""
    seen = {table: connection.execute(sa.text(
        f"select to_jsonb(row) - 'refreshed_at' from flywheel.{table} as row order by 1")).scalars().all()
        for table in ROLLUPS}
    summary = summary_row(connection)._asdict()
    seen["summary"] = {key: value for key, value in summary.items() if key != "snapshot_id"}
    return seen


# Each rollup's columns and its definition over the source (sql/refresh/*_from_source.sql), which
# also returns day NULL (undated rows) and day -infinity (rows the refresh cannot use).
DEFINED_ROLLUPS = {
    "daily_incidents": ("day, incidents_created, alertname_missing, status_investigating, status_mitigating,"
                        " status_resolved, status_closed, status_other, execution_success",
                        "flywheel.daily_incidents_from_source(:schema, :zone)"),
    "daily_executions": ("day, executions, successes", "flywheel.daily_executions_from_source(:schema, :zone)"),
    "daily_knowledge": ("day, entries_created, entries_unvectorized",
                        "flywheel.daily_knowledge_from_source(:schema, :zone)"),
}


def assert_rollups_equal_their_definitions(connection: sa.Connection) -> None:
    settings = {"schema": connection.execute(sa.text("select flywheel.setting('source_schema') #>> '{}'")).scalar_one(),
                "zone": connection.execute(sa.text("select flywheel.setting('timezone') #>> '{}'")).scalar_one()}
    for table, (columns, definition) in DEFINED_ROLLUPS.items():
        kept = connection.execute(sa.text(f"select {columns} from flywheel.{table} order by day")).all()
        defined = connection.execute(sa.text(
            f"select {columns} from {definition} where day is not null and day <> '-infinity' order by day"),
            settings).all()
        assert kept == defined, table
    # An incremental run may leave a bucket at zero; the definition has no row for it.
    kept_buckets = connection.execute(sa.text(
        "select bucket_start, executions, successes from flywheel.recent_executions"
        " where (executions, successes) <> (0, 0) order by 1")).all()
    defined_buckets = connection.execute(sa.text(
        "select * from flywheel.recent_executions_from_source(:schema,"
        " (select recent_executions_from from flywheel.refresh_state)) order by 1"), settings).all()
    assert kept_buckets == defined_buckets


def assert_incremental_equals_full(connection: sa.Connection, as_of: datetime) -> None:
    incremental = run_refresh(connection, as_of)
    assert incremental["mode"] == "incremental", incremental["mode_reason"]
    assert_rollups_equal_their_definitions(connection)
    kept = results(connection)
    full = run_refresh(connection, as_of, full=True)
    assert results(connection) == kept
    assert all(value == 0 for numbers in full["drift"].values() for value in numbers.values()), full["drift"]


# One step of the platform's life; the clock moves forward between steps, and every write stamps
# updated_at with it, as the platform does.
steps = st.one_of(
    st.tuples(st.just("incident"), st.integers(0, 72 * 60), st.sampled_from(["investigating", "mitigating", "resolved"]),
              st.sampled_from([None, " ", "HighCPU"]), st.sampled_from([None, True, False]),
              st.sampled_from(["TYPE-1", "TYPE-4"])),
    st.tuples(st.just("status"), st.integers(0, 10_000), st.sampled_from(["mitigating", "resolved", "closed"])),
    st.tuples(st.just("alertname"), st.integers(0, 10_000)),
    st.tuples(st.just("outcome"), st.integers(0, 10_000), st.booleans()),
    st.tuples(st.just("notification_type"), st.integers(0, 10_000), st.sampled_from(["TYPE-1", "TYPE-4"])),
    st.tuples(st.just("stuck_after"), st.sampled_from(["40 minutes", "24 hours"])),
    st.tuples(st.just("delete_recent_incident"), st.integers(0, 10_000)),
    st.tuples(st.just("execution"), st.integers(0, 9 * 24 * 60), st.sampled_from([None, True, False])),
    st.tuples(st.just("knowledge"), st.integers(0, 72 * 60), st.booleans()),
    st.tuples(st.just("embedding"), st.integers(0, 10_000), st.booleans()),
    st.tuples(st.just("refresh")),
)


class Platform:
    """Applies steps to the source tables with a moving clock, remembering what it wrote and when."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.clock = AS_OF - 2 * DAY
        self.incidents: dict[str, datetime] = {}  # key -> updated_at
        self.read_by_refresh: dict[str, datetime] = {}  # the same, as the last refresh read it
        self.numbers = itertools.count(1)
        self.knowledge_ids: list[int] = []
        # Before the first refresh rows may be back-dated freely; afterwards executions and knowledge
        # entries arrive as the platform writes them, created now (a late arrival is the full run's).
        self.settled = False

    def apply(self, step: tuple) -> None:
        self.clock += 3 * MINUTE
        kind, *arguments = step
        getattr(self, kind)(*arguments)

    def _pick(self, index: int) -> str | None:
        keys = sorted(self.incidents)
        return keys[index % len(keys)] if keys else None

    def _touch(self, key: str, assignment: str, values: dict) -> None:
        self.connection.execute(sa.text(f"update incidents set {assignment}, updated_at = :now where incident_id = :key"),
                                {**values, "now": self.clock, "key": key})
        self.incidents[key] = self.clock

    def incident(self, minutes_ago: int, status: str, alertname: str | None, success: bool | None,
                 notification_type: str) -> None:
        outcome = None if success is None else {"execution_success": success}
        key = add_incident(self.connection, incident_id=f"P-{next(self.numbers):04d}", status=status,
                           alertname=alertname, outcome=outcome, notification_type=notification_type,
                           created_at=self.clock - minutes_ago * MINUTE, updated_at=self.clock)
        self.incidents[key] = self.clock

    def status(self, index: int, status: str) -> None:
        if key := self._pick(index):
            self._touch(key, "status = :status", {"status": status})

    def alertname(self, index: int) -> None:
        if key := self._pick(index):
            self._touch(key, "alertname = 'DiskFull'", {})

    def outcome(self, index: int, success: bool) -> None:
        if key := self._pick(index):
            self._touch(key, "outcome = cast(:outcome as jsonb)", {"outcome": f'{{"execution_success": {str(success).lower()}}}'})

    def notification_type(self, index: int, notification_type: str) -> None:
        if key := self._pick(index):
            self._touch(key, "notification_type = :type", {"type": notification_type})

    def stuck_after(self, interval: str) -> None:
        # The threshold moves forward (a difference) or back (counted whole) at the next refresh.
        set_setting(self.connection, "stuck_after", interval)

    def delete_recent_incident(self, index: int) -> None:
        # A delete is seen when the last refresh read the row within the lookback of its watermark
        # (or never counted it); any other is the full refresh's to correct (tested below).
        watermark = max(self.read_by_refresh.values(), default=self.clock)
        recent = sorted(key for key in self.incidents
                        if key not in self.read_by_refresh or self.read_by_refresh[key] > watermark - LOOKBACK)
        if recent:
            key = recent[index % len(recent)]
            self.connection.execute(sa.text("delete from incidents where incident_id = :key"), {"key": key})
            del self.incidents[key]

    def _created_at(self, minutes_ago: int) -> datetime:
        return self.clock - (minutes_ago % 4 if self.settled else minutes_ago) * MINUTE

    def execution(self, minutes_ago: int, success: bool | None) -> None:
        add_execution(self.connection, success=success, created_at=self._created_at(minutes_ago))

    def knowledge(self, minutes_ago: int, vectorized: bool) -> None:
        self.connection.execute(sa.text(
            "insert into knowledge_entries (title, embedding, created_at) values ('note', :embedding, :created_at)"
        ), {"embedding": [0.5] if vectorized else None, "created_at": self._created_at(minutes_ago)})
        self.knowledge_ids.append(self.connection.execute(sa.text("select max(id) from knowledge_entries")).scalar_one())

    def embedding(self, index: int, vectorized: bool) -> None:
        if self.knowledge_ids:
            entry = self.knowledge_ids[index % len(self.knowledge_ids)]
            self.connection.execute(sa.text("update knowledge_entries set embedding = :embedding where id = :id"),
                                    {"embedding": [0.5] if vectorized else None, "id": entry})

    def refresh(self, full: bool = False) -> None:
        mode = run_refresh(self.connection, self.clock, full)["mode"]
        assert mode == "incremental" or full or not self.settled
        self.read_by_refresh = dict(self.incidents)


@pytest.fixture(params=generate.LAYOUTS)
def any_layout_connection(request) -> sa.Connection:
    """connection, on plain source tables and on range-partitioned ones (pg_partman's layout)."""
    url = request.getfixturevalue("database_url" if request.param == "plain" else "partitioned_database_url")
    engine = db.create_engine(url)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


@settings(max_examples=30, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.function_scoped_fixture])
# The incremental path converts each row to the zone, the full path adds fixed offsets
# (local_day_key_sql); zones east and west of UTC, one with a half-hour offset, must agree.
@given(history=st.lists(steps, min_size=1, max_size=12), changes=st.lists(steps, min_size=1, max_size=25),
       zone=st.sampled_from(["Asia/Taipei", "America/Santiago", "Australia/Lord_Howe"]))
def test_incremental_refreshes_equal_a_full_recomputation_after_any_changes(any_layout_connection, history, changes,
                                                                           zone):
    connection = any_layout_connection
    savepoint = connection.begin_nested()
    try:
        set_setting(connection, "timezone", zone)
        platform = Platform(connection)
        for step in history:
            platform.apply(step)
        platform.refresh(full=True)
        platform.settled = True
        for step in changes:
            platform.apply(step)
        assert_incremental_equals_full(connection, platform.clock)
    finally:
        savepoint.rollback()


def test_first_refresh_is_full_and_the_next_incremental(connection):
    first = run_refresh(connection)
    second = run_refresh(connection)
    assert (first["mode"], second["mode"]) == ("full", "incremental")
    assert "first refresh" in first["mode_reason"]


def test_first_refresh_at_or_after_full_refresh_at_is_full_once_a_day(connection):
    set_setting(connection, "full_refresh_at", "17:45")  # AS_OF is 16:30 in Taipei
    run_refresh(connection, AS_OF)
    assert run_refresh(connection, AS_OF + 75 * MINUTE - timedelta(microseconds=1))["mode"] == "incremental"
    due = run_refresh(connection, AS_OF + 75 * MINUTE)
    assert (due["mode"], due["mode_reason"]) == ("full", "the nightly full refresh: none since 2026-11-28 17:45 "
                                                         "(the full_refresh_at setting); run under READ COMMITTED: "
                                                         "a change committed during the run may drift until the "
                                                         "next full refresh")
    assert run_refresh(connection, AS_OF + 76 * MINUTE)["mode"] == "incremental"
    assert run_refresh(connection, AS_OF + DAY + 75 * MINUTE)["mode"] == "full"


def test_full_refresh_at_taipei_midnight_is_due_from_midnight_on(connection):
    set_setting(connection, "full_refresh_at", "00:00")
    midnight = datetime(2026, 11, 29, tzinfo=AS_OF.tzinfo)
    run_refresh(connection, midnight - MINUTE)
    assert run_refresh(connection, midnight - timedelta(microseconds=1))["mode"] == "incremental"
    assert run_refresh(connection, midnight)["mode"] == "full"


def test_full_refresh_at_null_leaves_the_full_refresh_to_the_scheduler(connection):
    set_setting(connection, "full_refresh_at", None)
    run_refresh(connection, AS_OF)
    assert run_refresh(connection, AS_OF + 3 * DAY)["mode"] == "incremental"


def test_refresh_notes_when_it_runs_under_read_committed(connection):
    assert "READ COMMITTED" in run_refresh(connection)["mode_reason"]


def test_incremental_refresh_counts_a_new_incident_and_a_status_change(connection):
    key = add_incident(connection, status="investigating", created_at=AS_OF - 2 * HOUR, updated_at=AS_OF - 2 * HOUR)
    run_refresh(connection)
    connection.execute(sa.text("update incidents set status = 'resolved', updated_at = :now where incident_id = :key"),
                       {"now": AS_OF, "key": key})
    add_incident(connection, status="investigating", created_at=AS_OF, updated_at=AS_OF)
    run_refresh(connection)
    summary = summary_row(connection)
    assert (summary.incidents_total, summary.incidents_investigating, summary.today_processed) == (2, 1, 2)


def test_incremental_refresh_subtracts_a_recently_changed_incident_deleted(connection):
    add_incident(connection, created_at=AS_OF - DAY, updated_at=AS_OF - DAY)
    key = add_incident(connection, created_at=AS_OF - 5 * DAY, updated_at=AS_OF - DAY)
    run_refresh(connection)
    connection.execute(sa.text("delete from incidents where incident_id = :key"), {"key": key})
    assert run_refresh(connection)["mode"] == "incremental"
    assert summary_row(connection).incidents_total == 1


def test_full_refresh_reports_the_drift_of_an_old_incident_deleted_unseen(connection):
    key = add_incident(connection, created_at=AS_OF - 5 * DAY, updated_at=AS_OF - 5 * DAY)
    add_incident(connection, created_at=AS_OF - DAY, updated_at=AS_OF - DAY)
    run_refresh(connection)
    connection.execute(sa.text("delete from incidents where incident_id = :key"), {"key": key})
    assert run_refresh(connection)["mode"] == "incremental"
    assert summary_row(connection).incidents_total == 2
    full = run_refresh(connection, full=True)
    assert full["drift"]["daily_incidents"]["incidents_created"] == 1
    assert full["drift"]["daily_incidents"]["days"] == 1
    assert summary_row(connection).incidents_total == 1


def test_old_incident_changed_after_the_lookback_recounts_its_day(connection):
    key = add_incident(connection, status="resolved", created_at=AS_OF - 20 * DAY, updated_at=AS_OF - 20 * DAY)
    add_incident(connection, status="resolved", created_at=AS_OF - DAY, updated_at=AS_OF - DAY)
    run_refresh(connection)
    connection.execute(sa.text("update incidents set status = 'closed', updated_at = :now where incident_id = :key"),
                       {"now": AS_OF, "key": key})
    result = run_refresh(connection)
    daily = next(step for step in result["steps"] if step["step"] == "daily_incidents")
    assert daily["days_recounted"] == 1
    assert connection.execute(sa.text(
        "select sum(status_closed), sum(status_resolved) from flywheel.daily_incidents")).one() == (1, 1)


def test_changing_the_timezone_forces_a_full_refresh_into_the_new_days(connection):
    # 23:30 UTC on the 26th is the 27th in Taipei and the 26th in UTC.
    add_incident(connection, created_at=datetime.fromisoformat("2026-11-26T23:30:00+00:00"))
    run_refresh(connection)
    set_setting(connection, "timezone", "UTC")
    result = run_refresh(connection)
    assert result["mode"] == "full"
    assert "timezone setting changed from Asia/Taipei to UTC" in result["mode_reason"]
    assert result["drift"] is None
    assert connection.execute(sa.text("select day::text from flywheel.daily_incidents")).scalar_one() == "2026-11-26"


def test_refresh_falls_back_to_full_without_the_updated_at_index_and_says_so(connection):
    connection.execute(sa.text("drop index incidents_updated_at"))
    run_refresh(connection)
    result = run_refresh(connection)
    assert result["mode"] == "full"
    assert "lacks an index on incidents (updated_at)" in result["mode_reason"]
    assert connection.execute(sa.text("select count(*) from flywheel.refresh_state")).scalar_one() == 0


def test_refresh_falls_back_to_full_without_incidents_updated_at(connection):
    connection.execute(sa.text("alter table incidents drop column updated_at"))
    connection.execute(sa.text(
        "insert into incidents (incident_id, status, created_at) values ('INC-no-updated-at', 'resolved', :at)"),
        {"at": AS_OF})
    result = run_refresh(connection)
    assert "lacks the column incidents.updated_at" in result["mode_reason"]
    assert summary_row(connection).incidents_total == 1


def test_check_says_every_refresh_is_full_without_incidents_updated_at(engine):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table incidents drop column updated_at"))
    report = check.check(engine)
    warning = next(finding for finding in report.findings if finding.subject == "incidents.updated_at")
    assert "every refresh is full" in warning.message
    assert report.ok


def test_check_suggests_the_updated_at_index_the_incremental_refresh_needs(engine):
    with engine.begin() as connection:
        connection.execute(sa.text("drop index incidents_updated_at"))
    suggestion = next(finding for finding in check.check(engine).findings if "(updated_at)" in finding.subject)
    assert suggestion.statement == 'CREATE INDEX CONCURRENTLY incidents_updated_at ON public.incidents (updated_at);'
    assert "every refresh is full" in suggestion.message


def test_cli_full_refresh_says_why_and_what_drift_it_corrected(database_url):
    result = CliRunner().invoke(cli, ["refresh", "--full", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "(full) ok" in result.output
    assert "why: asked for (full => true)" in result.output


DEFINITIONS = """
select 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc'),
       p.proacl::text || ' owner ' || pg_get_userbyid(p.proowner)
from pg_proc p where p.pronamespace = 'flywheel'::regnamespace
union all
select 'relation ' || c.relname, coalesce(pg_get_viewdef(c.oid), c.relkind::text),
       obj_description(c.oid, 'pg_class'), c.relacl::text
from pg_class c where c.relnamespace = 'flywheel'::regnamespace and c.relkind in ('r', 'v', 'i')
union all
select 'column ' || c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod) || ' '
       || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), col_description(c.oid, a.attnum), a.attnotnull::text
from pg_class c
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
where c.relnamespace = 'flywheel'::regnamespace and c.relkind in ('r', 'v')
union all
select 'trigger ' || t.tgname, pg_get_triggerdef(t.oid), obj_description(t.oid, 'pg_trigger'), null
from pg_trigger t join pg_class c on c.oid = t.tgrelid
where c.relnamespace = 'flywheel'::regnamespace and not t.tgisinternal
order by 1
"""


def definitions(engine: sa.Engine) -> list[tuple]:
    with engine.begin() as connection:
        return [tuple(row) for row in connection.execute(sa.text(DEFINITIONS))]


def test_each_upgrade_and_downgrade_gives_exactly_its_release(empty_database_url):
    engine = db.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        generate.create_reference_schema(connection)
        add_incident(connection, status="investigating", created_at=AS_OF)
    releases = {}
    revisions = migrate.revisions()
    for revision in revisions:
        migrate.upgrade(engine, revision)
        releases[revision] = definitions(engine)
    with engine.begin() as connection:
        run_refresh(connection)
        run_refresh(connection)
    for revision in reversed(revisions[:-1]):
        migrate.downgrade(engine, revision)
        assert definitions(engine) == releases[revision]
    migrate.upgrade(engine)
    assert definitions(engine) == releases[revisions[-1]]
    assert "function flywheel.refresh(timestamp with time zone,boolean)" in {row[0] for row in releases["0002"]}
    assert "function flywheel.count_playbooks()" in {row[0] for row in releases["0003"]}
    engine.dispose()


def test_rate_falls_back_to_approved_playbooks_when_seven_days_hold_no_execution(connection):
    add_playbook(connection, status="approved", success_count=9, failure_count=3)
    add_playbook(connection, status="draft", success_count=100, failure_count=0)
    add_playbook(connection, valid=False)
    run_refresh(connection)
    summary = summary_row(connection)
    assert (summary.execution_success_rate, summary.execution_success_rate_source) == (0.75, "playbooks")
    assert (summary.playbook_count, summary.playbooks_invalid) == (1, 1)



def test_refresh_waits_for_another_then_says_busy_after_refresh_lock_wait(engine):
    with engine.begin() as connection:
        set_setting(connection, "refresh_lock_wait", "200 milliseconds")
    with engine.connect() as other:
        other.execute(sa.text("select flywheel.take_refresh_lock()"))
        with pytest.raises(RefreshBusy, match="refresh_lock_wait"):
            refreshing.refresh(engine)
        other.rollback()
    assert refreshing.refresh(engine).mode == "full"


def test_incremental_refresh_counts_stuck_and_type4_incidents_from_the_tracked_rows(connection):
    add_incident(connection, status="investigating", notification_type="TYPE-4", created_at=AS_OF - 2 * DAY)
    add_incident(connection, status="investigating", created_at=AS_OF - HOUR)
    run_refresh(connection)
    add_incident(connection, status="investigating", notification_type="TYPE-4", created_at=AS_OF - 30 * HOUR,
                 updated_at=AS_OF)
    assert run_refresh(connection)["mode"] == "incremental"
    summary = summary_row(connection)
    assert (summary.incidents_investigating, summary.incidents_stuck, summary.type4_count) == (3, 2, 2)



def stuck_and_type4(connection: sa.Connection) -> tuple[int, int]:
    summary = summary_row(connection)
    return summary.incidents_stuck, summary.type4_count


def kept_counts(connection: sa.Connection, as_of: datetime) -> tuple[int, int]:
    """The counts of an incremental run at as_of, which must be the full refresh's at as_of too; the
    state is then as the full run leaves it."""
    assert run_refresh(connection, as_of)["mode"] == "incremental"
    incremental = stuck_and_type4(connection)
    run_refresh(connection, as_of, full=True)
    assert stuck_and_type4(connection) == incremental
    return incremental


def test_the_stuck_count_is_kept_in_refresh_state_between_runs(connection):
    add_incident(connection, status="investigating", notification_type="TYPE-4", created_at=AS_OF - 2 * DAY)
    run_refresh(connection, full=True)
    run_refresh(connection)
    kept = connection.execute(sa.text(
        "select incidents_stuck, type4_count, stuck_before from flywheel.refresh_state")).one()
    assert tuple(kept) == (1, 1, AS_OF - DAY)


def test_an_incident_becomes_stuck_exactly_stuck_after_past_its_creation_between_two_runs(connection):
    # stuck_after is 24 hours: investigating with created_at <= now - 24 hours is stuck.
    add_incident(connection, status="investigating", created_at=AS_OF - DAY + MINUTE)
    add_incident(connection, status="investigating", created_at=AS_OF - DAY + MINUTE + timedelta(microseconds=1))
    run_refresh(connection, AS_OF - MINUTE, full=True)
    assert kept_counts(connection, AS_OF) == (0, 0)
    assert kept_counts(connection, AS_OF + MINUTE) == (1, 0)
    assert kept_counts(connection, AS_OF + MINUTE + timedelta(microseconds=1)) == (2, 0)


def test_changing_stuck_after_either_way_gives_the_full_refresh_stuck_count(connection):
    for age in (HOUR, 3 * HOUR, 30 * HOUR):
        add_incident(connection, status="investigating", created_at=AS_OF - age)
    run_refresh(connection, AS_OF - MINUTE, full=True)
    assert kept_counts(connection, AS_OF) == (1, 0)
    set_setting(connection, "stuck_after", "2 hours")
    assert kept_counts(connection, AS_OF) == (2, 0)
    set_setting(connection, "stuck_after", "48 hours")
    assert kept_counts(connection, AS_OF) == (0, 0)


def test_a_refresh_at_an_earlier_as_of_counts_the_stuck_incidents_again(connection):
    add_incident(connection, status="investigating", created_at=AS_OF - DAY - 30 * MINUTE)
    run_refresh(connection, full=True)
    assert kept_counts(connection, AS_OF) == (1, 0)
    assert kept_counts(connection, AS_OF - HOUR) == (0, 0)


def test_a_notification_type_or_status_change_moves_the_type4_count_by_its_difference(connection):
    changes = {
        add_incident(connection, status="investigating", notification_type="TYPE-1"): "notification_type = 'TYPE-4'",
        add_incident(connection, status="investigating", notification_type="TYPE-1"): "notification_type = 'TYPE-4'",
        add_incident(connection, status="investigating", notification_type="TYPE-4"): "notification_type = 'TYPE-2'",
        add_incident(connection, status="investigating", notification_type="TYPE-4"): "status = 'resolved'",
        add_incident(connection, status="mitigating", notification_type="TYPE-4"): "status = 'investigating'",
    }
    run_refresh(connection, AS_OF - MINUTE, full=True)
    assert kept_counts(connection, AS_OF) == (4, 2)
    for key, change in changes.items():
        connection.execute(sa.text(f"update incidents set {change}, updated_at = :now where incident_id = :key"),
                           {"now": AS_OF + MINUTE, "key": key})
    assert kept_counts(connection, AS_OF + 2 * MINUTE) == (4, 3)


FAR_FUTURE = datetime(2100, 1, 1, tzinfo=AS_OF.tzinfo)


def test_an_incident_updated_in_2100_does_not_hide_the_incidents_written_after_it(connection):
    add_incident(connection, status="resolved", created_at=AS_OF - DAY, updated_at=FAR_FUTURE)
    run_refresh(connection, full=True)
    now = connection.execute(sa.text("select now()")).scalar_one()
    for _ in range(5):
        add_incident(connection, status="investigating", created_at=now, updated_at=now)
    assert run_refresh(connection)["mode"] == "incremental"
    summary = summary_row(connection)
    assert (summary.incidents_total, summary.incidents_investigating) == (6, 5)


def test_no_watermark_passes_five_minutes_after_now_even_from_a_full_refresh(connection):
    add_incident(connection, created_at=AS_OF - DAY, updated_at=FAR_FUTURE)
    add_execution(connection, created_at=FAR_FUTURE)
    add_knowledge_entry(connection, created_at=FAR_FUTURE)
    run_refresh(connection, full=True)
    state = connection.execute(sa.text(
        "select incidents_watermark, executions_watermark, knowledge_watermark, now() + interval '5 minutes' as ceiling"
        " from flywheel.refresh_state")).one()
    assert state.incidents_watermark == state.executions_watermark == state.knowledge_watermark == state.ceiling


def test_rows_from_the_future_are_counted_and_read_again_by_every_refresh(connection):
    add_execution(connection, created_at=FAR_FUTURE, success=True)
    run_refresh(connection, full=True)
    now = connection.execute(sa.text("select now()")).scalar_one()
    add_execution(connection, created_at=now, success=False)
    result = run_refresh(connection)
    assert result["mode"] == "incremental"
    assert {step["step"]: step for step in result["steps"]}["daily_executions"]["read"] == 2
    assert (summary_row(connection).executions_7d, summary_row(connection).executions_24h) == (2, 2)
