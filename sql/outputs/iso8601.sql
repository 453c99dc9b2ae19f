-- flywheel.iso8601(ts, zone): ts as ISO 8601 text with zone's UTC offset.
--
-- Answers: how the JSON shapes print a time. The old service printed Python's datetime.isoformat(),
-- so this prints the same form: "2026-11-28T16:30:00.123456+08:00", the fraction only when there is
-- one. Read by summary_json() and flywheel_json().
--
-- drop: drop function if exists flywheel.iso8601(timestamptz, text)
create function flywheel.iso8601(ts timestamptz, zone text)
returns text
language sql
stable strict parallel safe
set search_path = pg_catalog, pg_temp
begin atomic
    select to_char(local_time, 'YYYY-MM-DD"T"HH24:MI:SS')
        || case when extract(microseconds from local_time)::bigint % 1000000 <> 0
                then to_char(local_time, '.US') else '' end
        || case when offset_seconds < 0 then '-' else '+' end
        || to_char(abs(offset_seconds) / 3600, 'FM00') || ':' || to_char(abs(offset_seconds) % 3600 / 60, 'FM00')
    from (select ts at time zone zone as local_time,
                 extract(epoch from (ts at time zone zone) - (ts at time zone 'UTC'))::integer as offset_seconds) as t;
end;

comment on function flywheel.iso8601(timestamptz, text) is
    'ts as ISO 8601 text in zone, with its UTC offset (the form of Python''s isoformat(): fraction only when non-zero)';
