-- How a failed refresh is recorded: flywheel.refresh_failure_cause() names the real cause of an
-- error, flywheel.record_refresh_failure() writes the refresh_log row, flywheel.require_writable()
-- refuses a server or transaction where nothing can be written, before anything is attempted.
--
-- Answers: a DBA's "why did the refresh fail?", in one line of refresh_log.error. A cancelled
-- statement says which statement_timeout cancelled it and where that value comes from (the
-- refresh_statement_timeout setting that flywheel-sync refresh applies, or one set for a role, a
-- database, the session or the server: issue 14 found a role's 3 s reported as
-- refresh_statement_timeout); a lock timeout on a source table names refresh_lock_timeout. Called by
-- flywheel.refresh() and flywheel.wait_for_refresh_lock(). A standby or a read-only transaction can
-- record nothing: require_writable() raises the one line a DBA needs instead of the failure handler's
-- own "cannot execute INSERT in a read-only transaction" (docs/refresh.md lists what cannot be recorded).
--
-- drop: drop function if exists flywheel.record_refresh_failure(timestamptz, timestamptz, text, text, jsonb, text, text, text); drop function if exists flywheel.refresh_failure_cause(text, text); drop function if exists flywheel.require_writable()
create function flywheel.require_writable()
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    if pg_is_in_recovery() then
        raise exception 'this is a read-only standby: refresh the primary'
            using errcode = 'read_only_sql_transaction',
                  hint = 'Point flywheel-sync refresh (or pg_cron) at the primary; the standby receives the metrics by replication.';
    end if;
    if current_setting('transaction_read_only') = 'on' then
        raise exception 'this transaction is read-only (default_transaction_read_only, or SET TRANSACTION READ ONLY): the refresh writes its results, run it in a read-write transaction'
            using errcode = 'read_only_sql_transaction';
    end if;
end
$$;

comment on function flywheel.require_writable() is
    'Raises one clear line when the refresh could write nothing: on a standby ("refresh the primary") or in a read-only transaction';

create function flywheel.refresh_failure_cause(message text, sqlstate text)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    timeout_ms bigint;
    timeout_source text;
begin
    if sqlstate = '57014' and message like '%statement timeout%' then
        select setting::bigint, source into timeout_ms, timeout_source from pg_settings where name = 'statement_timeout';
        if timeout_source = 'session' and timeout_ms || 'ms' = flywheel.setting_milliseconds('refresh_statement_timeout') then
            return format('%s: statement_timeout %s, the refresh_statement_timeout setting (raise it, or look for slow source queries with flywheel-sync check)',
                          message, current_setting('statement_timeout'));
        end if;
        return format('%s: statement_timeout %s, set %s, not by the refresh_statement_timeout setting',
                      message, current_setting('statement_timeout'),
                      case timeout_source
                          when 'user' then 'for the role (ALTER ROLE ... SET statement_timeout)'
                          when 'database' then 'for the database (ALTER DATABASE ... SET statement_timeout)'
                          when 'database user' then 'for the role in this database (ALTER ROLE ... IN DATABASE ... SET)'
                          when 'session' then 'in the session (SET statement_timeout, or PGOPTIONS)'
                          when 'configuration file' then 'in the server''s configuration (postgresql.conf)'
                          else format('by %s', timeout_source) end);
    elsif sqlstate = '57014' then
        return format('%s: the refresh was cancelled by a cancel request (pg_cancel_backend, or the client gave up)', message);
    elsif sqlstate = '55P03' and message not like 'another flywheel refresh%' then
        return format('%s: a source table stayed locked longer than refresh_lock_timeout (%s); look for DDL or LOCK TABLE in pg_locks',
                      message, flywheel.setting('refresh_lock_timeout') #>> '{}');
    end if;
    return message;
end
$$;

comment on function flywheel.refresh_failure_cause(text, text) is
    'An error of the refresh with its real cause appended: which statement_timeout cancelled it and where it was set, or refresh_lock_timeout';

create function flywheel.record_refresh_failure(
    started timestamptz, computed_at timestamptz, mode text, mode_reason text, steps jsonb,
    message text, sqlstate text, detail text)
returns jsonb
language sql
volatile
set search_path = pg_catalog, pg_temp
begin atomic
    insert into flywheel.refresh_log (started_at, finished_at, computed_at, mode, mode_reason, status, steps, error, sqlstate)
    values (started, clock_timestamp(), computed_at, mode, mode_reason, 'failed', steps,
            flywheel.refresh_failure_cause(message, sqlstate) || coalesce(' (' || nullif(detail, '') || ')', ''), sqlstate)
    returning to_jsonb(refresh_log.*);
end;

comment on function flywheel.record_refresh_failure(timestamptz, timestamptz, text, text, jsonb, text, text, text) is
    'Writes the refresh_log row of a failed refresh (its cause named by refresh_failure_cause) and returns it as jsonb';
