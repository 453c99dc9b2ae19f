-- Who may do what in schema flywheel (release 0006: the history tiers, settings_versions and
-- flywheel.history, which Grafana's time-series panels read; release 0007: current_flow is a
-- materialized view, and newest_active_incidents its definition).
--
-- flywheel_reader (Grafana's datasource user): reads the views and tables of results and calls the
-- read functions; no source table, no write. It may read refresh_state (how far the last refresh
-- got) but not the tracked_* tables, which are the refresh's own bookkeeping. flywheel_refresher
-- (cron, pg_cron, the sync worker): runs flywheel.refresh() -- SECURITY DEFINER, so it reads the
-- source tables with the owner's rights while the role itself cannot -- and writes the playbook mirror
-- and its log; it reads what a reader reads. Functions are revoked from PUBLIC first: PostgreSQL
-- grants EXECUTE to everyone by default. The metric definitions (incident_metrics and the others of
-- sql/metrics/) read the source tables, so they are the owner's: a DBA calls them as the migrating
-- role, and a reader reads their results in flywheel.summary.
--
-- When adding a view, table or function: grant it here (a new version of this file).
--
-- drop: none
revoke all on all functions in schema flywheel from public;
revoke all on all procedures in schema flywheel from public;
revoke all on all tables in schema flywheel from public;

grant select on
    flywheel.summary, flywheel.summary_targets, flywheel.snapshots, flywheel.settings,
    flywheel.daily_incidents, flywheel.daily_executions, flywheel.daily_knowledge,
    flywheel.current_flow, flywheel.newest_active_incidents, flywheel.playbooks, flywheel.refresh_log, flywheel.sync_log,
    flywheel.refresh_state, flywheel.playbook_totals,
    flywheel.settings_versions, flywheel.history_buckets
    to flywheel_reader;
grant execute on function
    flywheel.latest_summary(), flywheel.summary_json(), flywheel.flywheel_json(), flywheel.prometheus_text(boolean),
    flywheel.iso8601(timestamptz, text), flywheel.setting(text), flywheel.setting_problem(text, jsonb),
    flywheel.setting_milliseconds(text),
    flywheel.history(timestamptz, timestamptz, bigint), flywheel.history_tier(timestamptz, bigint),
    flywheel.history_tiers()
    to flywheel_reader;

grant flywheel_reader to flywheel_refresher;
grant execute on function flywheel.refresh(timestamptz, boolean) to flywheel_refresher;
grant execute on procedure flywheel.run_refresh(boolean) to flywheel_refresher;
-- The refresh lock is a row of flywheel.refresh_lock, granted to no role: only these SECURITY
-- DEFINER functions take it, so no login can block the refresh by holding it.
grant execute on function flywheel.wait_for_refresh_lock(boolean) to flywheel_refresher;
grant insert, update, delete on flywheel.playbooks, flywheel.sync_log to flywheel_refresher;
