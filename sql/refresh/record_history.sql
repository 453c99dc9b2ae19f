-- flywheel.history_tiers(): the history tiers and their retentions. flywheel.record_history(as_of):
-- fold the newest snapshot into every tier, and prune the snapshots and each tier.
--
-- Answers: nothing by itself; it keeps what the dashboard's time-series panels read at any range
-- (flywheel.history) in about constant time, the way Graphite retentions and TimescaleDB's
-- hierarchical continuous aggregates do (issue 13): raw snapshots (flywheel.snapshots, one per
-- refresh) for a short window, then buckets of 1 minute, 5 minutes, 1 hour, 6 hours and 12 hours
-- (flywheel.history_buckets), each kept for its own retention setting. The widths are those that
-- divide every $__interval Grafana rounds to at or above them (1m, 2m, 5m, 10m, 15m, 20m, 30m, 1h, 2h,
-- 3h, 6h, 12h, 1d, 7d, 30d, 1y), so a panel's bin is always whole buckets, and close enough that a
-- panel about 1,000 px wide reads a few thousand rows at most (a 1-minute and a 1-hour tier alone left
-- 10,080 rows at 7 days and 17,520 at 2 years; the 12-hour tier halves the 6-hour one's 2,920 there).
--
-- record_history is called by flywheel.refresh() right after it writes a snapshot, in the same
-- transaction: the snapshot is added to its bucket of each width (a new row for a bucket's first
-- snapshot), so a bucket always equals the aggregate of the snapshots in it, whatever order they come
-- in (a back-filling as_of folds into an old bucket). Buckets are date_bin() from the Unix epoch:
-- independent of the session's and the timezone setting's zone, nested in Grafana's $__interval bins.
-- Then prunes, measured from as_of (the metrics' clock, so a back-fill never prunes the present): the
-- snapshots older than history_raw_retention, each tier's buckets whose start is older than its
-- retention (a bucket exactly at the limit stays), and the settings versions no snapshot uses any
-- more, but for the newest (version ids only grow: flywheel.settings_version). Each delete reads an
-- index on the time column: its cost follows the rows it removes.
--
-- When changing this, also change: the columns of flywheel.history_buckets (migrations/versions/0006),
-- flywheel.history, the panels (flywheel_sync/outputs/grafana.py), docs/refresh.md and docs/settings.md.
--
-- drop: drop function if exists flywheel.record_history(timestamptz); drop function if exists flywheel.history_tiers()
-- PL/pgSQL rather than SQL: every panel's query calls it (through flywheel.history_tier), and
-- PL/pgSQL keeps its plan for the session where a SQL function with SET would plan it on every call.
create function flywheel.history_tiers()
returns table (bucket_width interval, retention interval)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    return query
    select tier.bucket_width, (settings.value #>> '{}')::interval
    from (values (interval '1 minute', 'history_1m_retention'),
                 (interval '5 minutes', 'history_5m_retention'),
                 (interval '1 hour', 'history_1h_retention'),
                 (interval '6 hours', 'history_6h_retention'),
                 (interval '12 hours', 'history_12h_retention')) as tier(bucket_width, setting_key)
    join flywheel.settings on settings.key = tier.setting_key;
end
$$;

comment on function flywheel.history_tiers() is
    'The history tiers of flywheel.history_buckets: each bucket width with its retention (the history_*_retention settings)';

create function flywheel.record_history(as_of timestamptz)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    retained record;
begin
    insert into flywheel.history_buckets as kept
    select tier.bucket_width, date_bin(tier.bucket_width, computed_at, timestamptz '1970-01-01 00:00:00+00'),
           1, computed_at,
           coalesce(execution_success_rate, 0), (execution_success_rate is not null)::integer,
           km_vectorized_rate, alertname_null_rate,
           playbook_count, playbooks_invalid, km_unvectorized_count, incidents_stuck, type4_count,
           count_1h, today_processed, execution_success_today, flywheel_conversions_today, refresh_ms
    from (select * from flywheel.snapshots order by snapshot_id desc limit 1) as newest
    cross join flywheel.history_tiers() as tier
    on conflict (bucket_width, bucket_start) do update set
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
        refresh_ms_max = greatest(kept.refresh_ms_max, excluded.refresh_ms_max);

    -- One delete per tier, a range of the primary key (bucket_width, bucket_start) each. One delete
    -- joined with flywheel.history_tiers() was planned as a merge join that read every bucket kept at
    -- every refresh (12 ms at S for 37,000 buckets).
    for retained in select * from flywheel.history_tiers() loop
        delete from flywheel.history_buckets
        where bucket_width = retained.bucket_width and bucket_start < as_of - retained.retention;
    end loop;
    delete from flywheel.snapshots
    where computed_at < as_of - (flywheel.setting('history_raw_retention') #>> '{}')::interval;
    delete from flywheel.settings_versions
    where settings_version_id < (select settings_version_id from flywheel.snapshots order by snapshot_id limit 1);
end
$$;

comment on function flywheel.record_history(timestamptz) is
    'Folds the newest snapshot into its bucket of every history tier (flywheel.history_buckets), then prunes the snapshots, each tier and unused settings versions after their retention settings, measured from as_of (the refresh''s clock)';
