-- flywheel.metrics_clock(as_of): the metrics' clock of a refresh, or one clear error when as_of is out of bounds.
--
-- Answers: which "now" flywheel.refresh() computes the metrics at (as_of, default the transaction's
-- start), refusing what would damage the history rather than describe it. A refresh prunes rows
-- older than its clock less the retention setting and records its clock as refresh_state.full_at, so
-- an as_of in the future (flywheel.refresh('9000-01-01') by any flywheel_refresher) would delete all
-- history and stop the nightly full refresh; infinity and years such as 294276 would fail with a raw
-- overflow. Accepted: from now() less 100 years (a back-fill; older clocks serve nothing) to
-- flywheel.clock_ceiling() (now() plus 5 minutes of skew).
--
-- drop: drop function if exists flywheel.metrics_clock(timestamptz)
create function flywheel.metrics_clock(as_of timestamptz)
returns timestamptz
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    if as_of is null then
        return now();
    end if;
    if as_of > flywheel.clock_ceiling() or as_of < now() - interval '100 years' then
        raise exception 'as_of % is out of bounds: it must lie between now() - 100 years and now() + 5 minutes (a refresh at a later clock would prune the history before it)',
                as_of
            using errcode = 'invalid_parameter_value',
                  hint = 'Leave as_of out for now, or pass a past time to back-fill.';
    end if;
    return as_of;
end
$$;

comment on function flywheel.metrics_clock(timestamptz) is
    'The metrics'' clock of flywheel.refresh(as_of): as_of (default now()), refused beyond now() + 5 minutes or before now() - 100 years';
