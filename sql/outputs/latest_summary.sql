-- flywheel.latest_summary(): the row of flywheel.summary, or an error that says what to do.
--
-- Answers: "what are the metrics now?" for the output functions summary_json(), flywheel_json()
-- and prometheus_text(), which all refuse to answer before the first refresh rather than make up
-- zeros (a zero would silence alerts such as incidents_stuck > 0).
--
-- drop: drop function if exists flywheel.latest_summary()
create function flywheel.latest_summary()
returns flywheel.summary
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    current flywheel.summary;
begin
    select * into current from flywheel.summary;
    if not found then
        raise exception 'the flywheel metrics have not been computed in this database yet'
            using errcode = 'no_data_found', hint = 'Run select flywheel.refresh(); or flywheel-sync refresh.';
    end if;
    return current;
end
$$;

comment on function flywheel.latest_summary() is
    'The row of flywheel.summary; raises no_data_found (with what to run) before the first refresh';
