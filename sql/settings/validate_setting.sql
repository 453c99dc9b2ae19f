-- Validation of flywheel.settings: flywheel.setting_problem(key, value) says what is wrong with a
-- value (NULL when nothing is), and triggers refuse any insert, update, delete or TRUNCATE that would
-- leave a bad or missing setting -- whether it comes from `flywheel-sync settings set` or plain SQL.
--
-- Every setting has bounds within which a refresh succeeds (release 0004, issue 14: values accepted
-- before made every refresh fail, some without a refresh_log row): whole numbers up to 10^9, written
-- without a decimal point (0.0 failed the refresh's integer cast; min_sample
-- 99999999999999999999999 overflowed bigint); the refresh's waits and timeouts from over zero to one
-- day (lock_timeout and statement_timeout hold at most 2147483647 ms, ~24.8 days, and 0 means no
-- limit at all), refresh_statement_timeout from one second; stuck_after up to 10 years and retention
-- from a day to 100 years (the refresh and the sync subtract them from now); the history tiers'
-- retentions (release 0006, issue 13) up to 100 years, from an hour for the raw snapshots (the
-- newest is always kept: it is flywheel.summary) and from a day for the tiers of buckets;
-- time zones by their IANA names only: abbreviations that are also zone files (EST, MST, HST), POSIX-style names whose
-- sign reads backwards (EST5EDT, Etc/GMT+8), and the files posixrules, localtime, Factory, posix/*
-- and right/* are refused; UTC is the one abbreviation kept. source_schema must hold the three
-- source tables. A value is shown cut to 40 characters in a message (1e400 is a 401-digit number).
-- docs/settings.md lists the same bounds; tests/test_settings.py checks that every accepted value
-- gives a refresh that succeeds.
--
-- When adding a setting: insert it in a migration and add its rule here (a new version of this file).
--
-- drop: drop trigger if exists settings_not_truncated on flywheel.settings; drop trigger if exists settings_validate on flywheel.settings; drop function if exists flywheel.validate_setting(); drop function if exists flywheel.setting_problem(text, jsonb)
create function flywheel.setting_problem(setting_key text, candidate jsonb)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    kind text := jsonb_typeof(candidate);
    shown text := case when length(candidate::text) > 40 then left(candidate::text, 37) || '...' else candidate::text end;
    parsed interval;
    least_allowed interval;
    most_allowed interval;
begin
    case
    when setting_key = 'timezone' then
        -- pg_timezone_names, not a trial "at time zone": that would also take abbreviations and
        -- POSIX strings such as 'UTC+8', whose sign is the reverse of what people mean.
        if kind is distinct from 'string'
           or not exists (select from pg_timezone_names where name = candidate #>> '{}')
           or candidate #>> '{}' ~ '[0-9]|^(posix|right)/|^(posixrules|localtime|Factory)$'
           or (candidate #>> '{}' <> 'UTC' and exists (select from pg_timezone_abbrevs where abbrev = candidate #>> '{}')) then
            return format('%s is not a time zone name PostgreSQL knows: use an IANA name such as "Asia/Taipei" (see pg_timezone_names; abbreviations such as EST and POSIX names such as EST5EDT are refused)', shown);
        end if;
    when setting_key = 'min_sample' then
        if kind is distinct from 'number' or scale(candidate::numeric) > 0
           or candidate::numeric not between 1 and 1000000000 then
            return format('%s is not a whole number from 1 to 1000000000', shown);
        end if;
    when setting_key = 'current_flow_limit' then
        if kind is distinct from 'number' or scale(candidate::numeric) > 0
           or candidate::numeric not between 0 and 1000 then
            return format('%s is not a whole number from 0 to 1000', shown);
        end if;
    when setting_key in ('dedup_window_min', 'target_playbook_count', 'target_km_unvectorized_count', 'target_incidents_stuck') then
        if kind is distinct from 'number' or scale(candidate::numeric) > 0
           or candidate::numeric not between 0 and 1000000000 then
            return format('%s is not a whole number from 0 to 1000000000', shown);
        end if;
    when setting_key in ('target_execution_success_rate', 'target_alertname_null_rate') then
        if kind is distinct from 'number' or candidate::numeric not between 0 and 1 then
            return format('%s is not a number from 0 to 1', shown);
        end if;
    when setting_key in ('stuck_after', 'retention', 'refresh_lock_wait', 'refresh_lock_timeout', 'refresh_statement_timeout',
                         'history_raw_retention', 'history_1m_retention', 'history_5m_retention', 'history_1h_retention',
                         'history_6h_retention', 'history_12h_retention') then
        if kind is distinct from 'string' then
            return format('%s is not an interval: write it as a string such as "24 hours"', shown);
        end if;
        begin
            parsed := (candidate #>> '{}')::interval;
        exception when others then
            return format('%s is not an interval PostgreSQL can read: write it such as "24 hours" or "30 seconds"', shown);
        end;
        least_allowed := case setting_key when 'retention' then interval '1 day'
                                          when 'refresh_statement_timeout' then interval '1 second'
                                          when 'history_raw_retention' then interval '1 hour'
                                          when 'history_1m_retention' then interval '1 day'
                                          when 'history_5m_retention' then interval '1 day'
                                          when 'history_1h_retention' then interval '1 day'
                                          when 'history_6h_retention' then interval '1 day'
                                          when 'history_12h_retention' then interval '1 day' end;
        most_allowed := case when setting_key = 'stuck_after' then interval '10 years'
                             when setting_key like '%retention' then interval '100 years'
                             else interval '1 day' end;
        -- Compared in seconds: interval comparison counts a month as 30 days as extract does.
        if extract(epoch from parsed) <= 0 then
            return format('%s must be longer than zero', shown);
        elsif extract(epoch from parsed) < extract(epoch from least_allowed) then
            return format('%s is shorter than %s, the least this setting takes', shown, least_allowed);
        elsif extract(epoch from parsed) > extract(epoch from most_allowed) then
            return format('%s is longer than %s, the most this setting takes', shown, most_allowed);
        end if;
    when setting_key = 'full_refresh_at' then
        -- JSON null turns the nightly full refresh off (the scheduler then runs --full itself).
        if kind = 'null' then
            return null;
        end if;
        if kind is distinct from 'string' or candidate #>> '{}' !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' then
            return format('%s is not a time of day such as "03:00" (24-hour HH:MM, in the timezone setting), or null for no automatic full refresh', shown);
        end if;
    when setting_key = 'mcp_providers' then
        if kind is distinct from 'array'
           or exists (select from jsonb_array_elements(candidate) as e where jsonb_typeof(e) <> 'string') then
            return format('%s is not an array of strings such as ["k8s", "ssh"]', shown);
        end if;
    when setting_key = 'source_schema' then
        if kind is distinct from 'string' or candidate #>> '{}' = '' then
            return format('%s is not a schema name', shown);
        end if;
        if to_regclass(format('%I.incidents', candidate #>> '{}')) is null
           or to_regclass(format('%I.auto_repair_executions', candidate #>> '{}')) is null
           or to_regclass(format('%I.knowledge_entries', candidate #>> '{}')) is null then
            return format('%s does not hold the tables incidents, auto_repair_executions and knowledge_entries (flywheel-sync check --source-schema tells what it lacks)', shown);
        end if;
    else
        return format('unknown setting %s: the settings are listed by select key from flywheel.settings', setting_key);
    end case;
    return null;
end
$$;

comment on function flywheel.setting_problem(text, jsonb) is
    'What is wrong with a value for a setting, in one sentence; NULL when the value is acceptable';

create function flywheel.validate_setting()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    problem text;
begin
    if tg_op = 'TRUNCATE' then
        raise exception 'flywheel.settings cannot be truncated: the refresh needs every setting'
            using errcode = 'check_violation',
                  hint = 'Set a value instead (flywheel-sync settings set KEY VALUE).';
    end if;
    if tg_op = 'DELETE' then
        raise exception 'setting % cannot be deleted: the refresh needs every setting', old.key
            using errcode = 'check_violation',
                  hint = 'Set it to another value instead (flywheel-sync settings set KEY VALUE).';
    end if;
    if tg_op = 'UPDATE' and new.key <> old.key then
        raise exception 'setting % cannot be renamed', old.key using errcode = 'check_violation';
    end if;
    problem := flywheel.setting_problem(new.key, new.value);
    if problem is not null then
        raise exception 'setting %: %', new.key, problem
            using errcode = 'check_violation',
                  hint = 'The setting keeps its old value; see the description column of flywheel.settings.';
    end if;
    return new;
end
$$;

comment on function flywheel.validate_setting() is
    'Trigger function of flywheel.settings: refuses unknown keys, bad values, deletes and TRUNCATE';

create trigger settings_validate
    before insert or update or delete on flywheel.settings
    for each row execute function flywheel.validate_setting();

comment on trigger settings_validate on flywheel.settings is
    'Refuses a bad setting value even from a plain SQL UPDATE (see flywheel.setting_problem)';

-- TRUNCATE fires no row trigger: without this one it emptied the table and every refresh then failed.
create trigger settings_not_truncated
    before truncate on flywheel.settings
    for each statement execute function flywheel.validate_setting();

comment on trigger settings_not_truncated on flywheel.settings is
    'Refuses TRUNCATE: the refresh needs every setting';
