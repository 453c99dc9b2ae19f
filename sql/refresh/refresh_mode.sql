-- flywheel.refresh_mode(state, full_asked, zone, source_schema, metrics_now): whether this run of
-- flywheel.refresh() is incremental or full, and why.
--
-- Answers, for flywheel.refresh() (refresh_log.mode and mode_reason; nobody else calls it): a run is
-- incremental only when it can start from the state of a run with the same settings and the source
-- makes "what changed" cheap to find. It is full, and mode_reason says why, when
--   full_asked (full => true);
--   no refresh_state (the first run, or the last one could not track changes);
--   the timezone or source_schema setting changed since the last run (the rollups' days move);
--   it is the first run at or after the full_refresh_at setting (local time) since the last full one:
--     the nightly full run, without a second schedule;
--   the source lacks incidents.updated_at or an index the incremental run reads through (then
--     tracking is false: nothing is tracked and every run is full; flywheel-sync check names it).
-- A run under READ COMMITTED is noted: each statement reads its own snapshot, so a change committed
-- during it may drift until the next full run.
--
-- An index serves when the table has a valid one, or, for a partitioned table, when every leaf
-- partition has one of its own (what check's partition-by-partition recipe leaves before the
-- parent's index is attached and valid).
--
-- When changing this, also change: flywheel_sync/database/check.py (the indexes wanted), docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh_mode(flywheel.refresh_state, boolean, text, text, timestamptz)
create function flywheel.refresh_mode(state flywheel.refresh_state, full_asked boolean, zone text, source_schema text,
                                      metrics_now timestamptz, out mode text, out mode_reason text,
                                      out tracking boolean)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    full_refresh_at time := (flywheel.setting('full_refresh_at') #>> '{}')::time;
    -- now's date in the zone: the nightly run is due at full_refresh_at today, or yesterday.
    today date := (metrics_now at time zone zone)::date;
    nightly_due timestamptz;
    lacking text[];
begin
    select coalesce(array_agg(wanted.what order by wanted.what) filter (where not wanted.present), '{}')
      into lacking
      from (
        select index_wanted.what,
               coalesce(bool_or(served.indexed) filter (where tree.level = 0), false)
               or coalesce(bool_and(served.indexed) filter (where tree.isleaf and tree.level > 0), false) as present
        from (values
            ('incidents', 'updated_at', null, 'an index on incidents (updated_at)'),
            ('incidents', 'created_at', null, 'an index on incidents (created_at)'),
            ('auto_repair_executions', 'created_at', null, 'an index on auto_repair_executions (created_at)'),
            ('knowledge_entries', 'created_at', null, 'an index on knowledge_entries (created_at)'),
            ('knowledge_entries', null, '(embedding IS NULL)', 'an index on knowledge_entries WHERE embedding IS NULL')
        ) as index_wanted (source_table, leading_column, predicate, what)
        left join lateral (
            -- The table itself, then (partitioned) its partitions: pg_partition_tree lists
            -- nothing for a plain table.
            select table_itself.oid, 0, table_itself.relkind <> 'p'
            from pg_class as table_itself
            where table_itself.oid = to_regclass(format('%I.%I', source_schema, index_wanted.source_table))
            union all
            select partition.relid, partition.level, partition.isleaf
            from pg_partition_tree(to_regclass(format('%I.%I', source_schema, index_wanted.source_table))) as partition
            where partition.level > 0
        ) as tree (relid, level, isleaf) on true
        left join lateral (
            select exists (
                   select from pg_index i
                   join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
                   where i.indrelid = tree.relid
                     and i.indisvalid
                     and (index_wanted.leading_column is null or a.attname = index_wanted.leading_column)
                     and (index_wanted.predicate is null
                          or pg_get_expr(i.indpred, i.indrelid) = index_wanted.predicate))
        ) as served (indexed) on true
        group by index_wanted.what
      ) as wanted;
    if not exists (select from pg_attribute
                   where attrelid = to_regclass(format('%I.incidents', source_schema))
                     and attname = 'updated_at' and not attisdropped) then
        lacking := array['the column incidents.updated_at'];
    end if;

    if full_asked then
        mode_reason := 'asked for (full => true)';
    elsif state is null then
        mode_reason := 'no incremental state yet: first refresh, or the last one could not track changes';
    elsif state.timezone is distinct from zone then
        mode_reason := format('the timezone setting changed from %s to %s', state.timezone, zone);
    elsif state.source_schema is distinct from source_schema then
        mode_reason := format('the source_schema setting changed from %s to %s', state.source_schema, source_schema);
    elsif full_refresh_at is not null then
        nightly_due := (today + full_refresh_at) at time zone zone;
        if nightly_due > metrics_now then
            nightly_due := (today - 1 + full_refresh_at) at time zone zone;
        end if;
        if state.full_at < nightly_due then
            mode_reason := format('the nightly full refresh: none since %s (the full_refresh_at setting)',
                                  to_char(nightly_due at time zone zone, 'YYYY-MM-DD HH24:MI'));
        end if;
    end if;
    tracking := cardinality(lacking) = 0;
    if not tracking then
        mode_reason := concat_ws('; ', mode_reason, format('the source lacks %s, so every refresh is full (see flywheel-sync check)',
                                                           array_to_string(lacking, ', ')));
    end if;
    mode := case when mode_reason is null then 'incremental' else 'full' end;
    if current_setting('transaction_isolation') = 'read committed' then
        mode_reason := concat_ws('; ', mode_reason,
                                 'run under READ COMMITTED: a change committed during the run may drift until the next full refresh');
    end if;
end
$$;

comment on function flywheel.refresh_mode(flywheel.refresh_state, boolean, text, text, timestamptz) is
    'For flywheel.refresh(): incremental or full, with the reason when full (asked for, no state, a setting changed, the nightly run after full_refresh_at, a source lacking incidents.updated_at or an index); tracking: whether the source lets it track changes';
