-- flywheel.save_refresh_state(run, full_run, incidents_watermark, executions_watermark,
-- knowledge_watermark, recent_executions_from): where the next run of flywheel.refresh() starts.
--
-- Answers, for flywheel.refresh() (its snapshot step; nobody else calls it): writes the one row of
-- flywheel.refresh_state -- the settings the rollups were computed with (a change makes the next run
-- full), each source table's watermark, the lookback, where the buckets of recent_executions start,
-- and, after a full run, full_at (the nightly run is due once a day after it). Without tracking
-- (run.tracking false: the source lacks incidents.updated_at or an index) it deletes the row, so the
-- next run is full again and says why. The stuck and TYPE-4 counts in the same row are
-- flywheel.stuck_counts' to keep.
--
-- drop: drop function if exists flywheel.save_refresh_state(flywheel.refresh_run, boolean, timestamptz, timestamptz, timestamptz, timestamptz)
create function flywheel.save_refresh_state(run flywheel.refresh_run, full_run boolean,
                                            incidents_watermark timestamptz, executions_watermark timestamptz,
                                            knowledge_watermark timestamptz, recent_executions_from timestamptz)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    if not run.tracking then
        delete from flywheel.refresh_state;
        return;
    end if;
    insert into flywheel.refresh_state as kept
        (singleton, timezone, source_schema, incidents_watermark, executions_watermark, knowledge_watermark,
         lookback, full_at, recent_executions_from)
    values (true, run.zone, run.source_schema, save_refresh_state.incidents_watermark,
            save_refresh_state.executions_watermark, save_refresh_state.knowledge_watermark, run.lookback,
            run.metrics_now, save_refresh_state.recent_executions_from)
    on conflict (singleton) do update set
        timezone = excluded.timezone, source_schema = excluded.source_schema,
        recent_executions_from = excluded.recent_executions_from,
        incidents_watermark = excluded.incidents_watermark,
        executions_watermark = excluded.executions_watermark,
        knowledge_watermark = excluded.knowledge_watermark,
        full_at = case when full_run then excluded.full_at else kept.full_at end;
end
$$;

comment on function flywheel.save_refresh_state(flywheel.refresh_run, boolean, timestamptz, timestamptz, timestamptz, timestamptz) is
    'For flywheel.refresh(): writes refresh_state (settings, watermarks, lookback, where the buckets start, full_at after a full run), or deletes it when the source does not allow tracking';
