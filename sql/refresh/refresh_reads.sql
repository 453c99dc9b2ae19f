-- flywheel.refresh_reads(run, state, incremental): how this run of flywheel.refresh() reads each
-- source table, filled into its flywheel.refresh_run.
--
-- Answers, for flywheel.refresh() (after the mode is chosen; nobody else calls it): the rows an
-- incremental run reads besides the tracked ones (incidents by updated_at, executions and knowledge
-- entries by created_at, plus the unvectorized backlog, each past its watermark less the lookback;
-- every row when full), the rule that skips the rows the refresh cannot use and the subquery of the
-- others, which every step reads instead of the table. Duplicated keys are looked for among the rows
-- read; a row read again as the tracked rows hold it (key and created_at) was looked up in the whole
-- table when first read, so only the others' keys are (flywheel.unusable_row_reason_sql).
--
-- When changing this, also change: docs/refresh.md (what an incremental run reads).
--
-- drop: drop function if exists flywheel.refresh_reads(flywheel.refresh_run, flywheel.refresh_state, boolean)
create function flywheel.refresh_reads(run flywheel.refresh_run, state flywheel.refresh_state, incremental boolean)
returns flywheel.refresh_run
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    if incremental then
        run.incidents_read := format('updated_at > %L', coalesce(state.incidents_watermark - run.lookback, '-infinity'));
        run.executions_read := format('created_at > %L', coalesce(state.executions_watermark - run.lookback, '-infinity'));
        run.knowledge_read := format('embedding is null or created_at > %L',
                                     coalesce(state.knowledge_watermark - run.lookback, '-infinity'));
    end if;
    run.incidents_reason := flywheel.unusable_row_reason_sql(run.source_schema, 'incidents', run.incidents_read,
                                                             'flywheel.tracked_incidents');
    run.executions_reason := flywheel.unusable_row_reason_sql(run.source_schema, 'auto_repair_executions',
                                                              run.executions_read, 'flywheel.tracked_executions');
    run.knowledge_reason := flywheel.unusable_row_reason_sql(run.source_schema, 'knowledge_entries', run.knowledge_read,
                                                             'flywheel.tracked_knowledge');
    run.incidents_rows := flywheel.usable_rows_sql(run.source_schema, 'incidents', run.incidents_reason);
    run.executions_rows := flywheel.usable_rows_sql(run.source_schema, 'auto_repair_executions', run.executions_reason);
    run.knowledge_rows := flywheel.usable_rows_sql(run.source_schema, 'knowledge_entries', run.knowledge_reason);
    return run;
end
$$;

comment on function flywheel.refresh_reads(flywheel.refresh_run, flywheel.refresh_state, boolean) is
    'For flywheel.refresh(): run with how each source table is read filled in -- the rows an incremental run reads, the rule that skips unusable rows and the subquery of the usable ones';
