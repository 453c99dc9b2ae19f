-- flywheel.local_day_key_sql(column_name, zone, from_time, to_time): SQL text that gives, for a
-- timestamptz column, the midnight UTC of the column's date in zone (a timestamptz).
--
-- Answers: how the full refresh puts ten million rows into days without converting each row to the
-- time zone, which applies the zone's rules row by row. Measured at scale L (10 million incidents,
-- 2 cores, parallel): counting per local date took 2.8 s, per this key 1.3 s; count(*) alone 0.5 s.
--
-- Between two midnights whose UTC offsets are equal, "add that offset, bin by whole UTC days" is
-- exactly the local date, whatever happens in between (a day of 23 or 25 hours has unequal offsets
-- at its two midnights, so it never qualifies). The expression is a CASE over the stretches of such
-- days between from_time and to_time, newest first since most rows are recent (one stretch for a
-- zone without daylight saving time), and the exact conversion for every other row: days around a
-- change of offset, rows outside the range, and NULL (which stays NULL). The caller keeps the range
-- to a few decades: one row per day is computed. Read by the rollups' definitions
-- (daily_incidents_from_source and the others) for the full refresh's passes; the result is grouped
-- on, then turned into a date with (key at time zone 'UTC')::date.
--
-- Literals are written in forms every DateStyle and IntervalStyle read back the same way.
--
-- drop: drop function if exists flywheel.local_day_key_sql(text, text, timestamptz, timestamptz)
create function flywheel.local_day_key_sql(column_name text, zone text, from_time timestamptz, to_time timestamptz)
returns text
language sql
stable parallel safe
set search_path = pg_catalog, pg_temp
begin atomic
    with days as (
        select day::date as day, (day::date)::timestamp at time zone zone as midnight
        from generate_series(((from_time at time zone zone)::date - 1)::timestamp,
                             ((to_time at time zone zone)::date + 2)::timestamp, interval '1 day') as day
        -- An infinite bound would never end the series; such rows take the exact conversion anyway.
        where isfinite(from_time) and isfinite(to_time)
    ), offsets as (
        select day, midnight, lead(midnight) over (order by day) as next_midnight,
               day::timestamp - (midnight at time zone 'UTC') as utc_offset,
               lead(day::timestamp - (midnight at time zone 'UTC')) over (order by day) as next_utc_offset
        from days
    ), flagged as (
        -- Two regular days in a row share their offset, so a stretch starts after any irregular day.
        select day, midnight, next_midnight, utc_offset, next_utc_offset = utc_offset as regular,
               lag(next_utc_offset = utc_offset) over (order by day) as previous_regular
        from offsets
    ), stretches as (
        select min(midnight) as stretch_start, max(next_midnight) as stretch_end, min(utc_offset) as utc_offset
        from (select midnight, next_midnight, utc_offset,
                     count(*) filter (where previous_regular is not true) over (order by day) as stretch
              from flagged
              where regular) as regular_day
        group by stretch
    ), exact as (
        select format('(((%1$s at time zone %2$L)::date)::timestamp at time zone %3$L)',
                      quote_ident(column_name), zone, 'UTC') as expression
    )
    select coalesce(
        'case '
        || string_agg(format('when %1$s >= timestamptz %2$L and %1$s < timestamptz %3$L then date_bin(interval %4$L, %1$s + interval %5$L, timestamptz %6$L) ',
                             quote_ident(column_name),
                             to_char(stretch_start at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00',
                             to_char(stretch_end at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00',
                             '1 day',
                             extract(epoch from utc_offset)::text || ' seconds',
                             '2000-01-01 00:00:00+00'),
                      '' order by stretch_start desc) filter (where stretch_start is not null)
        || 'else ' || min(exact.expression) || ' end',
        min(exact.expression))
    from exact left join stretches on true;
end;

comment on function flywheel.local_day_key_sql(text, text, timestamptz, timestamptz) is
    'SQL text giving midnight UTC of column_name''s date in zone, cheaply: a fixed offset per stretch of days without a change of UTC offset between from_time and to_time, the exact conversion elsewhere. Used by the full refresh';
