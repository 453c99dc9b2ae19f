-- Validation of flywheel.settings: flywheel.setting_problem(key, value) says what is wrong with a
-- value (NULL when nothing is), and a trigger refuses any insert, update or delete that would leave a
-- bad or missing setting -- whether it comes from `flywheel-sync settings set` or a plain UPDATE.
--
-- When adding a setting: insert it in a migration and add its rule here (a new version of this file).
--
-- drop: drop trigger if exists settings_validate on flywheel.settings; drop function if exists flywheel.validate_setting(); drop function if exists flywheel.setting_problem(text, jsonb)
create function flywheel.setting_problem(setting_key text, candidate jsonb)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    kind text := jsonb_typeof(candidate);
    parsed interval;
begin
    case
    when setting_key = 'timezone' then
        -- pg_timezone_names, not a trial "at time zone": that would also take abbreviations and
        -- POSIX strings such as 'UTC+8', whose sign is the reverse of what people mean.
        if kind is distinct from 'string'
           or not exists (select from pg_timezone_names where name = candidate #>> '{}') then
            return format('%s is not a time zone name PostgreSQL knows: use an IANA name such as "Asia/Taipei" (see pg_timezone_names)', candidate);
        end if;
    when setting_key = 'min_sample' then
        if kind is distinct from 'number' or candidate::numeric <> trunc(candidate::numeric) or candidate::numeric < 1 then
            return format('%s is not a whole number >= 1', candidate);
        end if;
    when setting_key = 'current_flow_limit' then
        if kind is distinct from 'number' or candidate::numeric <> trunc(candidate::numeric)
           or candidate::numeric not between 0 and 1000 then
            return format('%s is not a whole number from 0 to 1000', candidate);
        end if;
    when setting_key in ('dedup_window_min', 'target_playbook_count', 'target_km_unvectorized_count', 'target_incidents_stuck') then
        if kind is distinct from 'number' or candidate::numeric <> trunc(candidate::numeric) or candidate::numeric < 0 then
            return format('%s is not a whole number >= 0', candidate);
        end if;
    when setting_key in ('target_execution_success_rate', 'target_alertname_null_rate') then
        if kind is distinct from 'number' or candidate::numeric not between 0 and 1 then
            return format('%s is not a number from 0 to 1', candidate);
        end if;
    when setting_key in ('stuck_after', 'retention', 'refresh_lock_wait', 'refresh_lock_timeout', 'refresh_statement_timeout') then
        if kind is distinct from 'string' then
            return format('%s is not an interval: write it as a string such as "24 hours"', candidate);
        end if;
        begin
            parsed := (candidate #>> '{}')::interval;
        exception when others then
            return format('%s is not an interval PostgreSQL can read: write it such as "24 hours" or "30 seconds"', candidate);
        end;
        if setting_key in ('stuck_after', 'retention') and parsed <= interval '0' then
            return format('%s must be longer than zero', candidate);
        elsif parsed < interval '0' then
            return format('%s must not be negative', candidate);
        end if;
    when setting_key = 'full_refresh_at' then
        -- JSON null turns the nightly full refresh off (the scheduler then runs --full itself).
        if kind = 'null' then
            return null;
        end if;
        if kind is distinct from 'string' or candidate #>> '{}' !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' then
            return format('%s is not a time of day such as "03:00" (24-hour HH:MM, in the timezone setting), or null for no automatic full refresh', candidate);
        end if;
    when setting_key = 'mcp_providers' then
        if kind is distinct from 'array'
           or exists (select from jsonb_array_elements(candidate) as e where jsonb_typeof(e) <> 'string') then
            return format('%s is not an array of strings such as ["k8s", "ssh"]', candidate);
        end if;
    when setting_key = 'source_schema' then
        if kind is distinct from 'string' or candidate #>> '{}' = '' then
            return format('%s is not a schema name', candidate);
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
    'Trigger function of flywheel.settings: refuses unknown keys, bad values and deletes';

create trigger settings_validate
    before insert or update or delete on flywheel.settings
    for each row execute function flywheel.validate_setting();

comment on trigger settings_validate on flywheel.settings is
    'Refuses a bad setting value even from a plain SQL UPDATE (see flywheel.setting_problem)';
