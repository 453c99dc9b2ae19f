-- flywheel.setting_milliseconds(key): an interval setting in whole milliseconds, as lock_timeout and
-- statement_timeout take it.
--
-- Answers: the value set_config() needs for refresh_lock_wait, refresh_lock_timeout and
-- refresh_statement_timeout. Rounded up and at least 1, so a value under a millisecond never becomes
-- 0, which PostgreSQL reads as "no timeout at all". flywheel.setting_problem() bounds these settings to
-- at most one day, well within the server's limit (2147483647 ms, about 24.8 days); a value stored
-- before those bounds (release 0003 took '100 days') is cut to that limit rather than make set_config
-- fail. Read by flywheel.refresh(), flywheel.take_refresh_lock() and flywheel_sync/database/refresh.py.
--
-- drop: drop function if exists flywheel.setting_milliseconds(text)
create function flywheel.setting_milliseconds(setting_key text)
returns text
language sql
stable strict
set search_path = pg_catalog, pg_temp
return least(greatest(ceil(extract(epoch from (flywheel.setting(setting_key) #>> '{}')::interval) * 1000), 1),
             2147483647)::bigint::text || 'ms';

comment on function flywheel.setting_milliseconds(text) is
    'An interval setting as whole milliseconds with the unit (''30000ms''), rounded up: what set_config(''lock_timeout'' or ''statement_timeout'', ...) takes';
