-- flywheel.timed_step(step, since): one entry of refresh_log.steps -- the step's own numbers and its
-- milliseconds since it started.
--
-- Answers, for flywheel.refresh() and its steps (nobody else calls it): {"step": ..., "rows": ...,
-- "ms": 12.3}, the ms to a tenth of a millisecond of the wall clock (clock_timestamp()), so that
-- refresh_log says where a slow run spent its time.
--
-- No SET clause, unlike the other functions: without one PostgreSQL inlines it into its caller (whose
-- search_path is pinned), where a SET clause made each call plan the body anew in every transaction:
-- 3 ms more per routine refresh at S (1.10x release 0006 in a new session's first refreshes; 1.03x
-- inlined).
--
-- drop: drop function if exists flywheel.timed_step(jsonb, timestamptz)
create function flywheel.timed_step(step jsonb, since timestamptz)
returns jsonb
language sql
volatile
return step || jsonb_build_object('ms', round(extract(epoch from clock_timestamp() - since)::numeric * 1000, 1));

comment on function flywheel.timed_step(jsonb, timestamptz) is
    'For flywheel.refresh(): a refresh_log.steps entry, the step''s numbers with its milliseconds since it started';
