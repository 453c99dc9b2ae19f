"""Incremental refresh: watermarks, the rows whose counted state is remembered, and the drift report.

flywheel.refresh() (version 2) recomputes only what changed since the last refresh: it needs the
watermarks of each source table (refresh_state) and, for the few rows that may still change (active
incidents, the unvectorized backlog, everything changed within the lookback), the state it counted
them in (tracked_*), so a change is applied as an exact difference. Every table and column of 0001
keeps its meaning; daily_incidents gains execution_success (so today's count comes from the rollup)
and refresh_log gains mode_reason and drift.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from flywheel_sync.database import objects

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATE = """
create table flywheel.refresh_state (
    singleton            boolean primary key default true check (singleton),
    timezone             text not null,
    source_schema        text not null,
    incidents_watermark  timestamptz,
    executions_watermark timestamptz,
    knowledge_watermark  timestamptz,
    lookback             interval not null default '10 minutes' check (lookback >= interval '0'),
    full_at              timestamptz not null,
    recent_executions_from timestamptz not null
);
comment on table flywheel.refresh_state is
    'Where the last refresh left off (one row): the incremental refresh reads only rows past these watermarks, less the lookback. Written by flywheel.refresh(); a change of timezone or source_schema forces a full refresh.';
comment on column flywheel.refresh_state.singleton is 'Always true: the table holds one row';
comment on column flywheel.refresh_state.timezone is 'The timezone setting the rollups and tracked days were computed in';
comment on column flywheel.refresh_state.source_schema is 'The source_schema setting the rollups were computed from';
comment on column flywheel.refresh_state.incidents_watermark is 'Newest incidents.updated_at seen (NULL: none yet)';
comment on column flywheel.refresh_state.executions_watermark is 'Newest auto_repair_executions.created_at seen (NULL: none yet)';
comment on column flywheel.refresh_state.knowledge_watermark is 'Newest knowledge_entries.created_at seen (NULL: none yet)';
comment on column flywheel.refresh_state.lookback is 'Rows are re-read this far behind each watermark, for transactions that commit after a later one; a change committed later than that is seen by the next full refresh';
comment on column flywheel.refresh_state.full_at is 'computed_at of the last full refresh';
comment on column flywheel.refresh_state.recent_executions_from is 'recent_executions holds every execution created at or after this';

create table flywheel.recent_executions (
    bucket_start timestamptz primary key,
    executions   bigint not null,
    successes    bigint not null
);
comment on table flywheel.recent_executions is
    'Executions per 10 minutes of created_at over the last 8 days: the 24-hour and 7-day windows of execution_success_rate sum whole buckets and read only the rows of their first, partial one. Internal to flywheel.refresh().';
comment on column flywheel.recent_executions.bucket_start is 'Start of the 10 minutes (date_bin from 2000-01-01 UTC)';
comment on column flywheel.recent_executions.executions is 'Executions created in those 10 minutes';
comment on column flywheel.recent_executions.successes is 'Of those, executions whose success IS TRUE';

create table flywheel.tracked_incidents (
    incident_id       text primary key,
    day               date,
    status            text,
    alertname_missing boolean not null,
    execution_success boolean not null,
    updated_at        timestamptz,
    created_at        timestamptz,
    alertname         text,
    notification_type text
);
create index tracked_incidents_updated_at on flywheel.tracked_incidents (updated_at);
-- current_flow: the newest active incidents, read in order without a sort.
create index tracked_incidents_active on flywheel.tracked_incidents (created_at desc nulls last, incident_id desc)
    where status in ('investigating', 'mitigating');
-- incidents_stuck and type4_count: only the rows they count are read.
create index tracked_incidents_investigating on flywheel.tracked_incidents (created_at) where status = 'investigating';
create index tracked_incidents_type4 on flywheel.tracked_incidents (notification_type) where status = 'investigating';
comment on table flywheel.tracked_incidents is
    'Incidents that are active or changed within the lookback, in the state the rollups count them in: a later change is applied as the difference, and the active ones give the active counts and current_flow. Internal to flywheel.refresh().';
comment on column flywheel.tracked_incidents.incident_id is 'incidents.incident_id, as text';
comment on column flywheel.tracked_incidents.day is 'Day of created_at in the timezone (daily_incidents.day); NULL when created_at is NULL';
comment on column flywheel.tracked_incidents.status is 'incidents.status as counted';
comment on column flywheel.tracked_incidents.alertname_missing is 'Counted in daily_incidents.alertname_missing';
comment on column flywheel.tracked_incidents.execution_success is 'Counted in daily_incidents.execution_success';
comment on column flywheel.tracked_incidents.updated_at is 'incidents.updated_at as read';
comment on column flywheel.tracked_incidents.created_at is 'incidents.created_at as read';
comment on column flywheel.tracked_incidents.alertname is 'incidents.alertname as read (current_flow)';
comment on column flywheel.tracked_incidents.notification_type is 'incidents.notification_type as read (type4_count)';

create table flywheel.tracked_executions (
    id         text primary key,
    day        date,
    success    boolean,
    created_at timestamptz
);
create index tracked_executions_created_at on flywheel.tracked_executions (created_at);
comment on table flywheel.tracked_executions is
    'Executions created within the lookback, in the state daily_executions counts them in. Internal to flywheel.refresh().';
comment on column flywheel.tracked_executions.id is 'auto_repair_executions.id, as text';
comment on column flywheel.tracked_executions.day is 'Day of created_at in the timezone; NULL when created_at is NULL';
comment on column flywheel.tracked_executions.success is 'auto_repair_executions.success as counted';
comment on column flywheel.tracked_executions.created_at is 'auto_repair_executions.created_at as read';

create table flywheel.tracked_knowledge (
    id           text primary key,
    day          date,
    unvectorized boolean not null,
    created_at   timestamptz
);
create index tracked_knowledge_created_at on flywheel.tracked_knowledge (created_at);
create index tracked_knowledge_unvectorized on flywheel.tracked_knowledge (id) where unvectorized;
comment on table flywheel.tracked_knowledge is
    'Knowledge entries unvectorized or created within the lookback, in the state daily_knowledge counts them in. Internal to flywheel.refresh().';
comment on column flywheel.tracked_knowledge.id is 'knowledge_entries.id, as text';
comment on column flywheel.tracked_knowledge.day is 'Day of created_at in the timezone; NULL when created_at is NULL';
comment on column flywheel.tracked_knowledge.unvectorized is 'Counted in daily_knowledge.entries_unvectorized (embedding was NULL)';
comment on column flywheel.tracked_knowledge.created_at is 'knowledge_entries.created_at as read';
"""

COLUMNS = """
-- The refresh counts invalid playbook records every minute: through this index, not the whole mirror.
create index playbooks_invalid on flywheel.playbooks (playbook_id) where not valid;
alter table flywheel.daily_incidents add column execution_success bigint not null default 0;
comment on column flywheel.daily_incidents.execution_success is
    'Of those, incidents whose outcome.execution_success is true or "true"';
alter table flywheel.refresh_log add column mode_reason text, add column drift jsonb;
comment on column flywheel.refresh_log.mode is
    'full: every rollup recomputed from the source tables; incremental: only the rows changed since the last refresh';
comment on column flywheel.refresh_log.mode_reason is
    'Why the run was full (asked for, first run, timezone or source_schema changed, a source lacking updated_at or an index), and a note when it ran under READ COMMITTED; NULL for an incremental run in one snapshot';
comment on column flywheel.refresh_log.drift is
    'Full runs: what the recomputation corrected in the rollups kept incrementally before it (per table: days changed, sum of absolute differences), i.e. deletes and late changes no watermark saw';
"""

DROP = """
drop index flywheel.playbooks_invalid;
drop table flywheel.recent_executions, flywheel.tracked_knowledge, flywheel.tracked_executions,
    flywheel.tracked_incidents, flywheel.refresh_state;
alter table flywheel.refresh_log drop column drift, drop column mode_reason;
alter table flywheel.daily_incidents drop column execution_success;
comment on column flywheel.refresh_log.mode is 'full: every rollup recomputed from the source tables';
"""


def upgrade() -> None:
    objects.execute(STATE)
    objects.execute(COLUMNS)
    objects.replace("0001", "0002")


def downgrade() -> None:
    objects.replace("0002", "0001")
    objects.execute(DROP)
