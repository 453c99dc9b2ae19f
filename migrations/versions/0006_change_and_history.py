"""Costs that follow change, and history in tiers (issues 13 and 15).

Release 0006 replaces flywheel.refresh (sql/functions/refresh_v05.sql, now sql/refresh/refresh.sql).

Costs that follow change (issue 15): refresh_state keeps the stuck and TYPE-4 counts
(flywheel.stuck_counts changes them by differences instead of counting the active set every minute),
and the incremental refresh looks up in the whole table only the keys of rows it has not counted
before (unusable_rows version 2).

History in tiers (issue 13): a snapshot no longer copies the settings (612 bytes a row); it keeps the
id of a row of the new table flywheel.settings_versions, written by the refresh when the settings
change (flywheel.settings_version). The refresh folds each snapshot into its 1-minute, 5-minute,
1-hour, 6-hour and 12-hour buckets (flywheel.history_buckets, written by flywheel.record_history) and prunes the
snapshots and each tier after its own retention setting (history_raw_retention, history_1m_retention,
history_5m_retention, history_1h_retention, history_6h_retention, history_12h_retention). The upgrade converts the settings
copies into versions and fills every tier from the snapshots there are; the downgrade puts the copies back and drops the tiers (what only they
held, history older than the raw retention, is lost).

The views and functions of 0005 that read snapshots.settings (flywheel.summary and its readers) are
dropped before the column goes, and those of 0006 created after the tables exist: objects.replace in
two halves, so that the table step falls between them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from flywheel_sync.database import objects

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SETTINGS_VERSIONS = """
create table flywheel.settings_versions (
    settings_version_id bigint generated always as identity primary key,
    first_used_at       timestamptz not null,
    settings            jsonb not null
);
comment on table flywheel.settings_versions is
    'Each set of settings a refresh computed with, written by flywheel.refresh() when the settings changed since the last one (flywheel.settings_version); snapshots keep its id instead of a copy. Pruned with the snapshots that used it, but for the newest.';
comment on column flywheel.settings_versions.settings_version_id is 'Increases with every change of the settings; snapshots.settings_version_id';
comment on column flywheel.settings_versions.first_used_at is 'The clock (computed_at) of the first snapshot computed with these settings';
comment on column flywheel.settings_versions.settings is 'The settings in force, key to value (the JSON functions read dedup_window_min and mcp_providers here)';

-- Every run of consecutive snapshots with the same copy becomes a version, numbered in snapshot order:
-- version ids then grow with snapshot_id, as the refresh keeps them (flywheel.record_history prunes
-- the versions older than the oldest snapshot's), even where the settings were changed back.
create temporary table snapshot_settings_runs on commit drop as
select snapshot_id, computed_at, settings,
       count(*) filter (where changed) over (order by snapshot_id) as run
from (select snapshot_id, computed_at, settings,
             settings is distinct from lag(settings) over (order by snapshot_id) as changed
      from flywheel.snapshots) as marked;
insert into flywheel.settings_versions (settings_version_id, first_used_at, settings) overriding system value
select run, min(computed_at), min(settings::text)::jsonb
from snapshot_settings_runs
group by run;
select setval(pg_get_serial_sequence('flywheel.settings_versions', 'settings_version_id'), max(run))
from snapshot_settings_runs
having count(*) > 0;

alter table flywheel.snapshots add column settings_version_id bigint references flywheel.settings_versions;
update flywheel.snapshots as snapshot
set settings_version_id = runs.run
from snapshot_settings_runs as runs
where runs.snapshot_id = snapshot.snapshot_id;
alter table flywheel.snapshots alter column settings_version_id set not null;
alter table flywheel.snapshots drop column settings;
comment on column flywheel.snapshots.settings_version_id is
    'The settings in force at this refresh: a row of flywheel.settings_versions (flywheel.summary shows them as its settings column)';
alter table flywheel.snapshots add column refresh_ms double precision;
comment on column flywheel.snapshots.refresh_ms is
    'Milliseconds the refresh took up to writing this snapshot (its clock_timestamp() then less its start): the dashboard''s Refresh duration at any range. NULL for snapshots written before release 0006';
-- The dashboard's failed refreshes per interval read these few rows at any range.
create index refresh_log_failed on flywheel.refresh_log (started_at) where status = 'failed';

comment on table flywheel.snapshots is
    'One row per refresh: every summary metric at that time; flywheel.summary is the newest row. The raw tier of the history: pruned after the history_raw_retention setting, folded into flywheel.history_buckets for longer ranges.';
"""

# The tiers' columns are what the dashboard's time-series panels aggregate (flywheel_sync/outputs/grafana.py):
# averages as sums over a count, the rest as the least or greatest value. Every tier is rows of one
# table, told apart by bucket_width (flywheel.history_tiers lists them), filled here from the
# snapshots there are as flywheel.record_history() folds each new one.
TIERS = """
create table flywheel.history_buckets (
    bucket_width                       interval not null,
    bucket_start                       timestamptz not null,
    snapshots                          integer not null,
    last_computed_at                   timestamptz not null,
    execution_success_rate_sum         double precision not null,
    execution_success_rate_samples     integer not null,
    km_vectorized_rate_sum             double precision not null,
    alertname_null_rate_sum            double precision not null,
    playbook_count_min                 bigint not null,
    playbooks_invalid_max              bigint not null,
    km_unvectorized_count_max          bigint not null,
    incidents_stuck_max                bigint not null,
    type4_count_max                    bigint not null,
    count_1h_max                       bigint not null,
    today_processed_max                bigint not null,
    execution_success_today_max        bigint not null,
    flywheel_conversions_today_max     bigint not null,
    refresh_ms_max                     double precision,
    primary key (bucket_width, bucket_start)
);
comment on table flywheel.history_buckets is
    'The history tiers: the snapshots of each bucket of 1 minute, 5 minutes, 1 hour, 6 hours and 12 hours (flywheel.history_tiers), folded by flywheel.refresh() as it writes each one (flywheel.record_history): what the dashboard''s time-series panels aggregate, for ranges whose $__interval is a bucket or more (flywheel.history). Each width pruned after its retention setting (history_1m_retention, ...).';
comment on column flywheel.history_buckets.bucket_width is 'The tier: 1 minute, 5 minutes, 1 hour, 6 hours or 12 hours';
comment on column flywheel.history_buckets.bucket_start is 'Start of the bucket: date_bin(bucket_width, computed_at, the Unix epoch), time-zone independent';
comment on column flywheel.history_buckets.snapshots is 'Snapshots folded into this row';
comment on column flywheel.history_buckets.last_computed_at is 'computed_at of the newest snapshot folded in';
comment on column flywheel.history_buckets.execution_success_rate_sum is 'Sum of execution_success_rate over the snapshots where it is not NULL';
comment on column flywheel.history_buckets.execution_success_rate_samples is 'Snapshots whose execution_success_rate is not NULL: the average is the sum over this';
comment on column flywheel.history_buckets.km_vectorized_rate_sum is 'Sum of km_vectorized_rate: the average is the sum over snapshots';
comment on column flywheel.history_buckets.alertname_null_rate_sum is 'Sum of alertname_null_rate: the average is the sum over snapshots';
comment on column flywheel.history_buckets.playbook_count_min is 'Fewest approved playbooks of a snapshot';
comment on column flywheel.history_buckets.playbooks_invalid_max is 'Most invalid playbook records of a snapshot';
comment on column flywheel.history_buckets.km_unvectorized_count_max is 'Most unvectorized knowledge entries of a snapshot';
comment on column flywheel.history_buckets.incidents_stuck_max is 'Most stuck incidents of a snapshot';
comment on column flywheel.history_buckets.type4_count_max is 'Most TYPE-4 incidents investigating of a snapshot';
comment on column flywheel.history_buckets.count_1h_max is 'Most incidents in the last hour of a snapshot';
comment on column flywheel.history_buckets.today_processed_max is 'Most incidents since midnight of a snapshot';
comment on column flywheel.history_buckets.execution_success_today_max is 'Most incidents repaired since midnight of a snapshot';
comment on column flywheel.history_buckets.flywheel_conversions_today_max is 'Most knowledge entries since midnight of a snapshot';
comment on column flywheel.history_buckets.refresh_ms_max is 'Slowest refresh (snapshots.refresh_ms) folded in; NULL when none was timed';

insert into flywheel.history_buckets
select width, date_bin(width, computed_at, timestamptz '1970-01-01 00:00:00+00'),
       count(*), max(computed_at),
       coalesce(sum(execution_success_rate), 0), count(execution_success_rate),
       sum(km_vectorized_rate), sum(alertname_null_rate),
       min(playbook_count), max(playbooks_invalid), max(km_unvectorized_count), max(incidents_stuck),
       max(type4_count), max(count_1h), max(today_processed), max(execution_success_today),
       max(flywheel_conversions_today), max(refresh_ms)
from flywheel.snapshots
cross join unnest(array[interval '1 minute', interval '5 minutes', interval '1 hour', interval '6 hours',
                         interval '12 hours']) as width
group by 1, 2;
"""

RETENTIONS = """
insert into flywheel.settings (key, value, description) values
    ('history_raw_retention', '"1 day"', 'Snapshots (one per refresh) older than this are pruned; the history tiers keep their history. Interval from 1 hour to 100 years'),
    ('history_1m_retention', '"8 days"', 'Rows of the 1-minute history tier older than this are pruned. Interval from 1 day to 100 years'),
    ('history_5m_retention', '"45 days"', 'Rows of the 5-minute history tier older than this are pruned. Interval from 1 day to 100 years'),
    ('history_1h_retention', '"1 year"', 'Rows of the 1-hour history tier older than this are pruned. Interval from 1 day to 100 years'),
    ('history_6h_retention', '"10 years"', 'Rows of the 6-hour history tier older than this are pruned. Interval from 1 day to 100 years'),
    ('history_12h_retention', '"10 years"', 'Rows of the 12-hour history tier older than this are pruned. Interval from 1 day to 100 years');
update flywheel.settings set description = 'refresh_log and sync_log rows older than this are pruned (snapshots: history_raw_retention). Interval from 1 day to 100 years'
where key = 'retention';
"""

STUCK_COUNTS = """
alter table flywheel.refresh_state add column incidents_stuck bigint, add column type4_count bigint,
    add column stuck_before timestamptz;
comment on column flywheel.refresh_state.incidents_stuck is
    'Tracked incidents investigating with created_at <= stuck_before, as the last refresh left them (flywheel.stuck_counts); NULL: counted whole by the next run';
comment on column flywheel.refresh_state.type4_count is
    'Tracked incidents investigating with notification_type TYPE-4, as the last refresh left them; NULL: counted whole by the next run';
comment on column flywheel.refresh_state.stuck_before is
    'computed_at - stuck_after of the last refresh: the created_at up to which incidents_stuck counts';
"""

DROP_STUCK_COUNTS = """
alter table flywheel.refresh_state drop column stuck_before, drop column type4_count, drop column incidents_stuck;
"""

TABLES = SETTINGS_VERSIONS + TIERS + RETENTIONS + STUCK_COUNTS

DROP = """
delete from flywheel.settings
where key in ('history_raw_retention', 'history_1m_retention', 'history_5m_retention', 'history_1h_retention',
              'history_6h_retention', 'history_12h_retention');
update flywheel.settings set description = 'Snapshots, refresh_log and sync_log rows older than this are pruned. Interval from 1 day to 100 years'
where key = 'retention';
drop table flywheel.history_buckets;
drop index flywheel.refresh_log_failed;
alter table flywheel.snapshots drop column refresh_ms;
alter table flywheel.snapshots add column settings jsonb;
update flywheel.snapshots as snapshot
set settings = version.settings
from flywheel.settings_versions as version
where version.settings_version_id = snapshot.settings_version_id;
alter table flywheel.snapshots alter column settings set not null;
alter table flywheel.snapshots drop column settings_version_id;
drop table flywheel.settings_versions;
comment on column flywheel.snapshots.settings is 'The settings in force at this refresh (the JSON functions read dedup_window_min and mcp_providers here)';
comment on table flywheel.snapshots is
    'One row per refresh: every summary metric at that time, for Grafana time series. Pruned after the retention setting. flywheel.summary is the newest row.';
"""


def upgrade() -> None:
    objects.replace("0005", None)
    objects.execute(TABLES)
    objects.replace(None, "0006")


def downgrade() -> None:
    # The settings triggers of 0006 refuse deletes: they go with the release's objects, before DROP.
    objects.replace("0006", None)
    objects.execute(DROP + DROP_STUCK_COUNTS)
    objects.replace(None, "0005")
