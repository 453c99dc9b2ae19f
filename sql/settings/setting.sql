-- flywheel.setting(key): the value of one setting, as jsonb.
--
-- Answers: what a setting is now. The refresh reads every setting through it; ad hoc SQL may too
-- (select flywheel.setting('timezone') #>> '{}').
--
-- drop: drop function if exists flywheel.setting(text)
create function flywheel.setting(setting_key text)
returns jsonb
language sql
stable strict parallel safe
set search_path = pg_catalog, pg_temp
begin atomic
    select value from flywheel.settings where key = setting_key;
end;

comment on function flywheel.setting(text) is
    'The value of one setting of flywheel.settings as jsonb; NULL for an unknown key';
