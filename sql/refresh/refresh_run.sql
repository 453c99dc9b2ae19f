-- flywheel.refresh_run: what one run of flywheel.refresh() knows before its steps, handed to each step.
--
-- Answers, for the refresh's steps (flywheel.refresh_*_full, refresh_*_incremental,
-- rebuild_tracked_rows, write_snapshot; nobody else uses it): the run's clock and settings, whether
-- the source lets it track changes, and how to read each source table: which rows an incremental run
-- reads, the rule that skips the rows it cannot use (flywheel.unusable_row_reason_sql) and the
-- subquery of the others (flywheel.usable_rows_sql), computed once per run by flywheel.refresh_reads,
-- since the rule looks for duplicated keys.
--
-- drop: drop type if exists flywheel.refresh_run
create type flywheel.refresh_run as (
    started timestamptz,
    metrics_now timestamptz,
    zone text,
    source_schema text,
    tracking boolean,
    ceiling timestamptz,
    lookback interval,
    incidents_read text,
    executions_read text,
    knowledge_read text,
    incidents_reason text,
    executions_reason text,
    knowledge_reason text,
    incidents_rows text,
    executions_rows text,
    knowledge_rows text
);

comment on type flywheel.refresh_run is
    'What one run of flywheel.refresh() hands to each of its steps: clock, settings, and how to read each source table';
comment on column flywheel.refresh_run.started is 'When the run started (clock_timestamp()): snapshots.refresh_ms counts from it';
comment on column flywheel.refresh_run.metrics_now is 'The metrics'' clock (as_of, default the transaction''s start), bounded by flywheel.metrics_clock';
comment on column flywheel.refresh_run.zone is 'The timezone setting: the rollups'' days are local days in it';
comment on column flywheel.refresh_run.source_schema is 'The source_schema setting: where the platform''s tables are';
comment on column flywheel.refresh_run.tracking is 'The source has incidents.updated_at and the indexes the incremental refresh needs: tracked rows and watermarks are kept';
comment on column flywheel.refresh_run.ceiling is 'flywheel.clock_ceiling(): no watermark passes it';
comment on column flywheel.refresh_run.lookback is 'refresh_state.lookback (default 10 minutes): rows this far behind a watermark are read again';
comment on column flywheel.refresh_run.incidents_read is 'SQL condition: the incidents an incremental run reads besides the tracked ones (NULL when full: every row)';
comment on column flywheel.refresh_run.executions_read is 'SQL condition: the auto_repair_executions rows an incremental run reads besides the tracked ones (NULL when full)';
comment on column flywheel.refresh_run.knowledge_read is 'SQL condition: the knowledge_entries rows an incremental run reads besides the tracked ones (NULL when full)';
comment on column flywheel.refresh_run.incidents_reason is 'SQL expression: why an incidents row cannot be used, NULL when it can (flywheel.unusable_row_reason_sql)';
comment on column flywheel.refresh_run.executions_reason is 'SQL expression: why an auto_repair_executions row cannot be used, NULL when it can';
comment on column flywheel.refresh_run.knowledge_reason is 'SQL expression: why a knowledge_entries row cannot be used, NULL when it can';
comment on column flywheel.refresh_run.incidents_rows is 'SQL subquery: the incidents the refresh can use (flywheel.usable_rows_sql), read instead of the table';
comment on column flywheel.refresh_run.executions_rows is 'SQL subquery: the auto_repair_executions rows the refresh can use';
comment on column flywheel.refresh_run.knowledge_rows is 'SQL subquery: the knowledge_entries rows the refresh can use';
