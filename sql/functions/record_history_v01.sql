-- flywheel.record_history(as_of): fold the newest snapshot into the history tiers, and prune each tier.
--
-- Answers: nothing by itself; it keeps what the dashboard's time-series panels read at any range
-- (flywheel.history) in constant time: raw snapshots (flywheel.snapshots, one per refresh) for a short
-- window, a 1-minute and a 1-hour tier (flywheel.history_minute, history_hour) for longer ones, the
-- way Graphite retentions and TimescaleDB's hierarchical continuous aggregates do (issue 13). Called
-- by flywheel.refresh() right after it writes a snapshot, in the same transaction: the snapshot is
-- added to the row of its minute and of its hour (a new row for the first snapshot of a bucket), so a
-- tier row always equals the aggregate of the snapshots in its bucket, whatever order they come in
-- (a back-filling as_of folds into an old bucket). Buckets are date_bin() from the Unix epoch:
-- independent of the session's and the timezone setting's zone, and nested in the $__interval bins
-- Grafana's queries draw (a whole number of minutes or hours from the epoch).
--
-- Then prunes, measured from as_of (the metrics' clock, so a back-fill never prunes the present): the
-- snapshots older than history_raw_retention, the tier rows whose bucket_start is older than
-- history_minute_retention and history_hour_retention (a row exactly at the limit stays), and the
-- settings versions no snapshot uses any more, but for the newest (versions only grow: settings_version).
-- Each delete reads an index on the time column: its cost follows the rows it removes.
--
-- When changing this, also change: the tier tables (migrations/versions/0006), flywheel.history, the
-- panels (flywheel_sync/grafana.py), docs/refresh.md.
--
-- drop: drop function if exists flywheel.record_history(timestamptz)
create function flywheel.record_history(as_of timestamptz)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    tier text;
    newest_id bigint := (select max(snapshot_id) from flywheel.snapshots);
begin
    foreach tier in array array['minute', 'hour'] loop
        execute format($sql$
            insert into flywheel.%1$I as kept
            select date_bin(%2$L, computed_at, timestamptz '1970-01-01 00:00:00+00'), 1, computed_at,
                   coalesce(execution_success_rate, 0), (execution_success_rate is not null)::integer,
                   km_vectorized_rate, alertname_null_rate,
                   playbook_count, playbooks_invalid, km_unvectorized_count, incidents_stuck, type4_count,
                   count_1h, today_processed, execution_success_today, flywheel_conversions_today, refresh_ms
            from flywheel.snapshots
            where snapshot_id = $1
            on conflict (bucket_start) do update set
                snapshots = kept.snapshots + 1,
                last_computed_at = greatest(kept.last_computed_at, excluded.last_computed_at),
                execution_success_rate_sum = kept.execution_success_rate_sum + excluded.execution_success_rate_sum,
                execution_success_rate_samples = kept.execution_success_rate_samples + excluded.execution_success_rate_samples,
                km_vectorized_rate_sum = kept.km_vectorized_rate_sum + excluded.km_vectorized_rate_sum,
                alertname_null_rate_sum = kept.alertname_null_rate_sum + excluded.alertname_null_rate_sum,
                playbook_count_min = least(kept.playbook_count_min, excluded.playbook_count_min),
                playbooks_invalid_max = greatest(kept.playbooks_invalid_max, excluded.playbooks_invalid_max),
                km_unvectorized_count_max = greatest(kept.km_unvectorized_count_max, excluded.km_unvectorized_count_max),
                incidents_stuck_max = greatest(kept.incidents_stuck_max, excluded.incidents_stuck_max),
                type4_count_max = greatest(kept.type4_count_max, excluded.type4_count_max),
                count_1h_max = greatest(kept.count_1h_max, excluded.count_1h_max),
                today_processed_max = greatest(kept.today_processed_max, excluded.today_processed_max),
                execution_success_today_max = greatest(kept.execution_success_today_max, excluded.execution_success_today_max),
                flywheel_conversions_today_max = greatest(kept.flywheel_conversions_today_max, excluded.flywheel_conversions_today_max),
                refresh_ms_max = greatest(kept.refresh_ms_max, excluded.refresh_ms_max)
        $sql$, 'history_' || tier, '1 ' || tier)
        using newest_id;
        execute format('delete from flywheel.%I where bucket_start < $1 - $2', 'history_' || tier)
        using as_of, (flywheel.setting(format('history_%s_retention', tier)) #>> '{}')::interval;
    end loop;

    delete from flywheel.snapshots
    where computed_at < as_of - (flywheel.setting('history_raw_retention') #>> '{}')::interval;
    delete from flywheel.settings_versions
    where settings_version_id < (select settings_version_id from flywheel.snapshots order by snapshot_id limit 1);
end
$$;

comment on function flywheel.record_history(timestamptz) is
    'Folds the newest snapshot into its rows of flywheel.history_minute and history_hour, then prunes the snapshots, both tiers and unused settings versions after their retention settings, measured from as_of (the refresh''s clock)';
