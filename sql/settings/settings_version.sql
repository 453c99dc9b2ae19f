-- flywheel.settings_version(as_of): the id of the settings in force, as a row of flywheel.settings_versions.
--
-- Answers: which settings a snapshot was computed with, for flywheel.summary (its settings column),
-- the JSON functions and summary_targets, without copying them into every snapshot (612 bytes a
-- row, ~145 MB per 90 days at one refresh a minute before release 0006, issue 13). Called by
-- flywheel.refresh() for the snapshot it writes: the settings are compared with the newest version
-- (one index probe) and a new version is written only when they differ; as_of (the refresh's clock)
-- becomes its first_used_at. Settings changed back to an earlier set get a new version: ids then
-- grow with time, which is what the pruning in flywheel.record_history() relies on.
--
-- When changing this, also change: flywheel.summary (which joins the version), docs/settings.md.
--
-- drop: drop function if exists flywheel.settings_version(timestamptz)
create function flywheel.settings_version(as_of timestamptz)
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    in_force jsonb := (select jsonb_object_agg(key, value) from flywheel.settings);
    newest flywheel.settings_versions;
begin
    select * into newest from flywheel.settings_versions order by settings_version_id desc limit 1;
    if newest.settings is not distinct from in_force then
        return newest.settings_version_id;
    end if;
    insert into flywheel.settings_versions (first_used_at, settings)
    values (as_of, in_force)
    returning settings_version_id into newest.settings_version_id;
    return newest.settings_version_id;
end
$$;

comment on function flywheel.settings_version(timestamptz) is
    'The id of the settings in force (flywheel.settings_versions), writing a new version first when they changed since the newest; as_of: the refresh''s clock, the new version''s first_used_at';
