"""Core: settings, snapshots, daily rollups, current flow, playbook mirror, run logs, roles.

The tables are written here (a table is changed by later migrations, not replaced); the views and
functions come from sql/ through flywheel_sync.database.objects, release 0001.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from flywheel_sync.database import objects

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROLES = """
-- Roles are cluster-wide: created when absent, never altered when present (a DBA may have given
-- them more), never dropped (the logins granted them keep their membership through a downgrade to
-- base and a new migrate). NOLOGIN: a login user is granted the role (see README, "Roles").
do $roles$
begin
    if not exists (select from pg_roles where rolname = 'flywheel_reader') then
        create role flywheel_reader nologin;
        comment on role flywheel_reader is
            'flywheel-sync: reads the flywheel views and read functions (Grafana''s datasource user); no source tables, no writes';
    end if;
    if not exists (select from pg_roles where rolname = 'flywheel_refresher') then
        create role flywheel_refresher nologin;
        comment on role flywheel_refresher is
            'flywheel-sync: runs flywheel.refresh() and writes the playbook mirror; nothing else';
    end if;
exception when insufficient_privilege then
    raise exception 'creating roles flywheel_reader and flywheel_refresher needs CREATEROLE'
        using hint = 'A superuser runs the statements of docs/migrations.md, "What the migrating role needs"; '
                     'then run the migration again.';
end
$roles$;
"""

SCHEMA = """
comment on table flywheel.alembic_version is 'alembic: the revision schema flywheel is at (flywheel-sync migrate)';
comment on column flywheel.alembic_version.version_num is 'The alembic revision id, e.g. 0001';
comment on schema flywheel is
    'flywheel-sync: health metrics of the AIOps flywheel, computed from the platform''s tables by flywheel.refresh(). See flywheel.summary.';
revoke all on schema flywheel from public;
grant usage on schema flywheel to flywheel_reader, flywheel_refresher;
"""

SETTINGS = """
create table flywheel.settings (
    key         text primary key,
    value       jsonb not null,
    description text not null
);
comment on table flywheel.settings is
    'Settings of the flywheel metrics (metrics.md). A change takes effect at the next refresh; a bad value is refused by a trigger.';
comment on column flywheel.settings.key is 'Name of the setting; only the names inserted by the migrations are accepted';
comment on column flywheel.settings.value is 'Value as JSON: a number, a string (intervals such as "24 hours", time zones) or an array';
comment on column flywheel.settings.description is 'What the setting changes, and its unit';

insert into flywheel.settings (key, value, description) values
    ('timezone', '"Asia/Taipei"', 'Time zone of "today" (today_start is midnight in it) and of the daily rollups; an IANA name'),
    ('min_sample', '10', 'Fewest executions (or playbook runs) behind execution_success_rate; fewer gives NULL. Integer >= 1'),
    ('stuck_after', '"24 hours"', 'An incident still investigating this long after created_at is stuck. Interval > 0'),
    ('current_flow_limit', '10', 'How many active incidents flywheel_json() lists in current_flow. Integer 0..1000'),
    ('dedup_window_min', '30', 'Deduplication window shown on the deduplication node, in minutes. Integer >= 0'),
    ('mcp_providers', '["k8s", "ssh", "prometheus"]', 'Diagnosis providers shown on the diagnosis node. Array of strings'),
    ('target_playbook_count', '20', 'Target: playbook_count >= this'),
    ('target_execution_success_rate', '0.3', 'Target: execution_success_rate >= this. Number 0..1'),
    ('target_km_unvectorized_count', '0', 'Target: km_unvectorized_count <= this'),
    ('target_alertname_null_rate', '0', 'Target: alertname_null_rate <= this. Number 0..1'),
    ('target_incidents_stuck', '0', 'Target: incidents_stuck <= this'),
    ('retention', '"90 days"', 'Snapshots, refresh_log and sync_log rows older than this are pruned. Interval > 0'),
    ('source_schema', '"public"', 'Schema of the platform''s tables incidents, knowledge_entries and auto_repair_executions'),
    ('refresh_lock_wait', '"30 seconds"', 'How long a refresh waits for another running refresh before it gives up. Interval >= 0'),
    ('refresh_lock_timeout', '"5 seconds"', 'lock_timeout of the refresh while it reads source tables: it gives up rather than queue behind DDL. Interval >= 0'),
    ('refresh_statement_timeout', '"10 minutes"', 'statement_timeout the CLI sets for a refresh (set it on the role for pg_cron). Interval >= 0');
"""

SNAPSHOTS = """
create table flywheel.snapshots (
    snapshot_id                    bigint generated always as identity primary key,
    computed_at                    timestamptz not null,
    timezone                       text not null,
    playbook_count                 bigint not null,
    playbooks_invalid              bigint not null,
    execution_success_rate         double precision,
    execution_success_rate_source  text not null
        check (execution_success_rate_source in ('24h', '7d', 'playbooks', 'insufficient')),
    execution_success_sample       bigint not null,
    executions_24h                 bigint not null,
    executions_7d                  bigint not null,
    km_total                       bigint not null,
    km_unvectorized_count          bigint not null,
    km_vectorized_rate             double precision not null,
    km_created_24h                 bigint not null,
    flywheel_conversions_today     bigint not null,
    incidents_total                bigint not null,
    incidents_alertname_missing    bigint not null,
    alertname_null_rate            double precision not null,
    incidents_investigating        bigint not null,
    incidents_mitigating           bigint not null,
    incidents_stuck                bigint not null,
    type4_count                    bigint not null,
    today_processed                bigint not null,
    count_1h                       bigint not null,
    execution_success_today        bigint not null,
    settings                       jsonb not null
);
create index snapshots_computed_at on flywheel.snapshots (computed_at);
comment on table flywheel.snapshots is
    'One row per refresh: every summary metric at that time, for Grafana time series. Pruned after the retention setting. flywheel.summary is the newest row.';
comment on column flywheel.snapshots.snapshot_id is 'Increases with every refresh; the newest row is the current summary';
comment on column flywheel.snapshots.computed_at is 'The refresh''s clock ("now" of metrics.md): every window of this row ends here';
comment on column flywheel.snapshots.timezone is 'The timezone setting in force: today_start is midnight of computed_at in it';
comment on column flywheel.snapshots.playbook_count is 'Valid playbooks in flywheel.playbooks whose status is approved (target >= 20)';
comment on column flywheel.snapshots.playbooks_invalid is 'Playbook records that failed validation (they count in no metric)';
comment on column flywheel.snapshots.execution_success_rate is 'Auto-repair success rate 0..1 from the first window with min_sample executions (24h, 7d, else approved playbooks); NULL when the sample is too small (target >= 0.3)';
comment on column flywheel.snapshots.execution_success_rate_source is 'Where the rate came from: 24h, 7d, playbooks, or insufficient (rate is NULL)';
comment on column flywheel.snapshots.execution_success_sample is 'Executions (or playbook runs, for source playbooks) behind the rate: the sample compared with min_sample';
comment on column flywheel.snapshots.executions_24h is 'auto_repair_executions with created_at >= computed_at - 24 hours';
comment on column flywheel.snapshots.executions_7d is 'auto_repair_executions with created_at >= computed_at - 7 days';
comment on column flywheel.snapshots.km_total is 'All knowledge entries';
comment on column flywheel.snapshots.km_unvectorized_count is 'Knowledge entries whose embedding IS NULL (target = 0)';
comment on column flywheel.snapshots.km_vectorized_rate is '(km_total - km_unvectorized_count) / km_total; 0 when there are none';
comment on column flywheel.snapshots.km_created_24h is 'Knowledge entries created in the 24 hours before computed_at (learning node status)';
comment on column flywheel.snapshots.flywheel_conversions_today is 'Knowledge entries with created_at >= today_start';
comment on column flywheel.snapshots.incidents_total is 'All incidents';
comment on column flywheel.snapshots.incidents_alertname_missing is 'Incidents whose alertname is NULL or blank (empty or only white space)';
comment on column flywheel.snapshots.alertname_null_rate is 'incidents_alertname_missing / incidents_total; 0 when there are none (target = 0)';
comment on column flywheel.snapshots.incidents_investigating is 'Incidents whose status is investigating (diagnosis node status)';
comment on column flywheel.snapshots.incidents_mitigating is 'Incidents whose status is mitigating';
comment on column flywheel.snapshots.incidents_stuck is 'Incidents investigating with created_at <= computed_at - stuck_after (target = 0)';
comment on column flywheel.snapshots.type4_count is 'Incidents investigating whose notification_type is TYPE-4';
comment on column flywheel.snapshots.today_processed is 'Incidents with created_at >= today_start';
comment on column flywheel.snapshots.count_1h is 'Incidents with created_at >= computed_at - 1 hour (monitoring node)';
comment on column flywheel.snapshots.execution_success_today is 'Incidents with created_at >= today_start whose outcome.execution_success is true or "true"';
comment on column flywheel.snapshots.settings is 'The settings in force at this refresh (the JSON functions read dedup_window_min and mcp_providers here)';
"""

ROLLUPS = """
create table flywheel.daily_incidents (
    day                  date primary key,
    day_start            timestamptz not null,
    incidents_created    bigint not null,
    alertname_missing    bigint not null,
    status_investigating bigint not null,
    status_mitigating    bigint not null,
    status_resolved      bigint not null,
    status_closed        bigint not null,
    status_other         bigint not null,
    refreshed_at         timestamptz not null
);
create index daily_incidents_day_start on flywheel.daily_incidents (day_start);
comment on table flywheel.daily_incidents is
    'Incidents per day of created_at in the timezone setting, for Grafana trends. Rewritten by flywheel.refresh().';
comment on column flywheel.daily_incidents.day is 'Calendar day in the timezone setting';
comment on column flywheel.daily_incidents.day_start is 'Midnight that starts the day, as a timestamp (the time column for $__timeFilter)';
comment on column flywheel.daily_incidents.incidents_created is 'Incidents created that day';
comment on column flywheel.daily_incidents.alertname_missing is 'Of those, incidents whose alertname is NULL or blank';
comment on column flywheel.daily_incidents.status_investigating is 'Of those, incidents now investigating';
comment on column flywheel.daily_incidents.status_mitigating is 'Of those, incidents now mitigating';
comment on column flywheel.daily_incidents.status_resolved is 'Of those, incidents now resolved';
comment on column flywheel.daily_incidents.status_closed is 'Of those, incidents now closed';
comment on column flywheel.daily_incidents.status_other is 'Of those, incidents with any other status (see flywheel-sync check)';
comment on column flywheel.daily_incidents.refreshed_at is 'The refresh that wrote this row (snapshots.computed_at)';

create table flywheel.daily_executions (
    day          date primary key,
    day_start    timestamptz not null,
    executions   bigint not null,
    successes    bigint not null,
    refreshed_at timestamptz not null
);
create index daily_executions_day_start on flywheel.daily_executions (day_start);
comment on table flywheel.daily_executions is
    'Auto-repair executions per day of created_at in the timezone setting. Rewritten by flywheel.refresh().';
comment on column flywheel.daily_executions.day is 'Calendar day in the timezone setting';
comment on column flywheel.daily_executions.day_start is 'Midnight that starts the day, as a timestamp';
comment on column flywheel.daily_executions.executions is 'Executions created that day (success true, false or NULL)';
comment on column flywheel.daily_executions.successes is 'Of those, executions whose success IS TRUE';
comment on column flywheel.daily_executions.refreshed_at is 'The refresh that wrote this row';

create table flywheel.daily_knowledge (
    day                  date primary key,
    day_start            timestamptz not null,
    entries_created      bigint not null,
    entries_unvectorized bigint not null,
    refreshed_at         timestamptz not null
);
create index daily_knowledge_day_start on flywheel.daily_knowledge (day_start);
comment on table flywheel.daily_knowledge is
    'Knowledge entries per day of created_at in the timezone setting. Rewritten by flywheel.refresh().';
comment on column flywheel.daily_knowledge.day is 'Calendar day in the timezone setting';
comment on column flywheel.daily_knowledge.day_start is 'Midnight that starts the day, as a timestamp';
comment on column flywheel.daily_knowledge.entries_created is 'Knowledge entries created that day';
comment on column flywheel.daily_knowledge.entries_unvectorized is 'Of those, entries whose embedding is still NULL';
comment on column flywheel.daily_knowledge.refreshed_at is 'The refresh that wrote this row';
"""

CURRENT_FLOW = """
create table flywheel.current_flow (
    position     integer primary key,
    incident_id  text not null,
    alertname    text,
    status       text not null,
    current_node text not null,
    created_at   timestamptz,
    refreshed_at timestamptz not null
);
comment on table flywheel.current_flow is
    'The newest active incidents (investigating or mitigating) at the last refresh, current_flow_limit of them; flywheel_json() lists them.';
comment on column flywheel.current_flow.position is '1 = newest (created_at descending, then incident_id descending)';
comment on column flywheel.current_flow.incident_id is 'incidents.incident_id, as text';
comment on column flywheel.current_flow.alertname is 'incidents.alertname as stored (NULL or blank shows as "unknown" in JSON)';
comment on column flywheel.current_flow.status is 'investigating or mitigating';
comment on column flywheel.current_flow.current_node is 'Flywheel node the incident is at: diagnosis (investigating) or execution (mitigating)';
comment on column flywheel.current_flow.created_at is 'incidents.created_at';
comment on column flywheel.current_flow.refreshed_at is 'The refresh that wrote this row';
"""

PLAYBOOKS = """
create table flywheel.playbooks (
    redis_key      bytea primary key,
    playbook_id    text not null,
    status         text,
    success_count  bigint,
    failure_count  bigint,
    document       jsonb,
    raw_excerpt    text,
    valid          boolean not null,
    invalid_reason text,
    content_hash   bytea not null,
    first_seen_at  timestamptz not null default now(),
    last_seen_at   timestamptz not null default now(),
    changed_at     timestamptz not null default now(),
    constraint playbooks_valid_has_no_reason check (valid = (invalid_reason is null)),
    constraint playbooks_valid_has_fields check (
        not valid or (status is not null and success_count >= 0 and failure_count >= 0)
    )
);
create index playbooks_approved on flywheel.playbooks (status) where valid;
comment on table flywheel.playbooks is
    'Mirror of the Redis playbook records (playbook:PB-*), kept by flywheel-sync sync. Invalid records stay, with the reason, and count in no metric.';
comment on column flywheel.playbooks.redis_key is 'The Redis key, byte for byte (keys may hold any bytes)';
comment on column flywheel.playbooks.playbook_id is 'The key without its prefix, as text (bytes that are not UTF-8 shown as \\xNN)';
comment on column flywheel.playbooks.status is 'The record''s status (approved, draft, deprecated, ...); NULL when invalid';
comment on column flywheel.playbooks.success_count is 'success_count of the record (absent or null reads as 0); NULL when invalid';
comment on column flywheel.playbooks.failure_count is 'failure_count of the record (absent or null reads as 0); NULL when invalid';
comment on column flywheel.playbooks.document is 'The record as JSON, when it parsed as a JSON object of a sane size';
comment on column flywheel.playbooks.raw_excerpt is 'The start of the raw value, for invalid records that are not a JSON object';
comment on column flywheel.playbooks.valid is 'True when the record is a JSON object with a string status and non-negative integer counts';
comment on column flywheel.playbooks.invalid_reason is 'Why the record is invalid; NULL when valid';
comment on column flywheel.playbooks.content_hash is 'Hash of the raw value: a record whose hash did not change is not rewritten';
comment on column flywheel.playbooks.first_seen_at is 'When the sync first saw the key';
comment on column flywheel.playbooks.last_seen_at is 'When a sync last saw the key in Redis, to the hour for unchanged keys (rewriting every row each pass would cost more than the pass); the newest complete sync_log row says when every present key was seen';
comment on column flywheel.playbooks.changed_at is 'When the sync last wrote a changed value';
"""

LOGS = """
create table flywheel.refresh_log (
    refresh_id  bigint generated always as identity primary key,
    started_at  timestamptz not null,
    finished_at timestamptz,
    computed_at timestamptz,
    mode        text not null default 'full',
    status      text not null check (status in ('ok', 'failed')),
    steps       jsonb not null default '[]',
    error       text,
    sqlstate    text
);
create index refresh_log_started_at on flywheel.refresh_log (started_at);
comment on table flywheel.refresh_log is
    'One row per run of flywheel.refresh(), failed runs included. Pruned after the retention setting.';
comment on column flywheel.refresh_log.refresh_id is 'Increases with every run';
comment on column flywheel.refresh_log.started_at is 'Wall-clock start of the run';
comment on column flywheel.refresh_log.finished_at is 'Wall-clock end of the run';
comment on column flywheel.refresh_log.computed_at is 'The metrics'' clock of the run (snapshots.computed_at)';
comment on column flywheel.refresh_log.mode is 'full: every rollup recomputed from the source tables';
comment on column flywheel.refresh_log.status is 'ok, or failed (see error; nothing of a failed run was kept)';
comment on column flywheel.refresh_log.steps is 'Array of {step, rows, ms}: each part of the run, the rows it wrote and its duration';
comment on column flywheel.refresh_log.error is 'The error that stopped a failed run';
comment on column flywheel.refresh_log.sqlstate is 'SQLSTATE of that error';

create table flywheel.sync_log (
    sync_id      bigint generated always as identity primary key,
    started_at   timestamptz not null,
    finished_at  timestamptz,
    mode         text not null,
    complete     boolean not null,
    scanned      bigint not null default 0,
    inserted     bigint not null default 0,
    updated      bigint not null default 0,
    unchanged    bigint not null default 0,
    deleted      bigint not null default 0,
    invalid      bigint not null default 0,
    error        text
);
create index sync_log_started_at on flywheel.sync_log (started_at);
comment on table flywheel.sync_log is
    'One row per sync pass over the Redis playbooks. Pruned after the retention setting.';
comment on column flywheel.sync_log.sync_id is 'Increases with every pass';
comment on column flywheel.sync_log.started_at is 'Start of the pass';
comment on column flywheel.sync_log.finished_at is 'End of the pass';
comment on column flywheel.sync_log.mode is 'pass (one flywheel-sync sync) or follow (a reconciliation of the running worker)';
comment on column flywheel.sync_log.complete is 'True when the pass saw the whole key space (only then are missing keys deleted)';
comment on column flywheel.sync_log.scanned is 'Keys seen';
comment on column flywheel.sync_log.inserted is 'Rows inserted for new keys';
comment on column flywheel.sync_log.updated is 'Rows rewritten because the value changed';
comment on column flywheel.sync_log.unchanged is 'Keys whose value had not changed (only last_seen_at updated)';
comment on column flywheel.sync_log.deleted is 'Rows deleted because their key is gone from Redis';
comment on column flywheel.sync_log.invalid is 'Keys whose record is invalid (kept as invalid rows)';
comment on column flywheel.sync_log.error is 'Why an incomplete pass stopped';
"""

DROP_TABLES = """
drop table flywheel.sync_log, flywheel.refresh_log, flywheel.playbooks, flywheel.current_flow,
    flywheel.daily_knowledge, flywheel.daily_executions, flywheel.daily_incidents,
    flywheel.snapshots, flywheel.settings;
"""


def upgrade() -> None:
    objects.execute(ROLES)
    objects.execute(SCHEMA)
    for tables in (SETTINGS, SNAPSHOTS, ROLLUPS, CURRENT_FLOW, PLAYBOOKS, LOGS):
        objects.execute(tables)
    objects.replace(None, "0001")


def downgrade() -> None:
    objects.replace("0001", None)
    objects.execute(DROP_TABLES)
