-- Source rows the refresh cannot use, and why: one rule for flywheel.refresh() and flywheel-sync check.
--
-- Answers: which rows of the platform's tables the metrics skip, so that one odd row never stops
-- every refresh (issue 14: a NULL or duplicated id broke the primary keys of tracked_*, a created_at
-- of 294276-12-31 overflowed the time-zone conversion, a 10 kB id or notification_type broke an
-- index of tracked_incidents). A row is skipped -- counted nowhere, and counted per reason in
-- refresh_log.unusable and by `flywheel-sync check` -- when, first reason first:
--   id_missing                  its key (incidents.incident_id, the others' id) is NULL;
--   id_too_long                 its key is longer than 1000 bytes as text (an index row holds ~2700);
--   id_duplicated               another row has the same key (every copy is skipped: none is the real
--                               one); looked for only when no unique index on the key rules it out,
--                               and, in an incremental run, only among the keys of the rows it reads,
--                               so a routine run does not read every key. There, with an index on the
--                               key (a partitioned table's primary key leads with it), a key repeated
--                               among the rows read is found among them, and only the keys of rows
--                               not counted before (not in the refresh's tracked rows with the same key
--                               and created_at: new rows, rows read for the first time since they left
--                               the tracked set, rows skipped before) are looked up in the whole table:
--                               a row counted before was looked up when first read, and a copy written
--                               since is a row not counted before (release 0006, issue 15: looking
--                               up every key read in each of 31 partitions cost 3-5x the routine
--                               refresh on plain tables at M). A copy written while its twin is not
--                               read skips that twin at the next full refresh;
--   notification_type_too_long  (incidents) longer than 1000 bytes: tracked_incidents indexes it;
--   created_at_out_of_range     before 1900-01-01 or from 10000-01-01 (UTC) on, infinity included:
--                               no local day can be computed for it. NULL stays an undated row, counted.
--
-- unusable_row_reason_sql(schema, table, read_condition, counted) gives the rule as a SQL expression
-- over a row of the table (NULL: usable), for the rows read_condition selects (NULL: every row), with
-- counted the table of rows counted before (NULL: none); usable_rows_sql(schema, table, reason) the subquery of the usable rows that
-- flywheel.refresh() reads instead of each table. unusable_rows(schema, table, reason, condition)
-- counts the skipped rows by reason among those the condition selects; unusable_source_rows(schema)
-- counts them over the whole of every source table.
--
-- When changing this, also change: docs/contract.md ("Rows the metrics skip").
--
-- drop: drop function if exists flywheel.unusable_source_rows(text); drop function if exists flywheel.unusable_rows(text, text, text, text); drop function if exists flywheel.usable_rows_sql(text, text, text); drop function if exists flywheel.unusable_row_reason_sql(text, text, text, regclass)
create function flywheel.unusable_row_reason_sql(source_schema text, source_table text, read_condition text default null,
                                                  counted regclass default null)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    source regclass := to_regclass(format('%I.%I', source_schema, source_table));
    key_column text := case source_table when 'incidents' then 'incident_id' else 'id' end;
    duplicated text[] := '{}';
    not_counted text[];
    found text[];
    key_index boolean := false;
    reason text;
begin
    if source is null then
        return 'null::text';
    end if;
    if not exists (select from pg_index i
                   join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
                   where i.indrelid = source and i.indisunique and i.indisvalid and i.indnkeyatts = 1
                     and i.indpred is null and i.indexprs is null and a.attname = key_column) then
        if read_condition is not null then
            -- The table's own index first: walking the partitions (pg_partition_tree) cost 10 ms at M.
            key_index := exists (select from pg_index i
                                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
                                 where i.indrelid = source and i.indisvalid and a.attname = key_column);
            if not key_index then
                key_index := exists (select from pg_index i
                                     join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
                                     where i.indrelid in (select relid from pg_partition_tree(source))
                                       and i.indisvalid and a.attname = key_column);
            end if;
        end if;
        if key_index then
            -- A key repeated among the rows read; then each key of a row not counted before looked up
            -- through an index on the key (a partitioned table's primary key leads with it: one
            -- look-up per partition; a hash join here scanned every partition, 175 ms a run at M), in
            -- a statement of its own run only when there is such a key: planning and starting a
            -- look-up into 31 partitions cost 30 ms at M with nothing to look up.
            -- The counted rows carry the source's key column name, as text, and created_at.
            execute format('select coalesce(array_agg(read.key) filter (where read.copies_read > 1), ''{}''),'
                           ' coalesce(array_agg(read.key) filter (where read.copies_read = 1 and read.not_counted_before), ''{}'')'
                           ' from (select %1$I::text as key, count(*) as copies_read, bool_or(%4$s) as not_counted_before'
                           ' from %2$s as source_row where %1$I is not null and (%3$s) group by 1) as read',
                           key_column, source, read_condition,
                           case when counted is null then 'true'
                                else format('not exists (select from %1$s as counted where counted.%2$I = source_row.%2$I::text'
                                            ' and counted.created_at is not distinct from source_row.created_at)',
                                            counted, key_column) end)
               into duplicated, not_counted;
            if cardinality(not_counted) > 0 then
                execute format('select coalesce(array_agg(read.key), ''{}'') from unnest($1) as read (key)'
                               ' where (select count(*) from (select from %1$s as other where other.%2$I = cast(read.key as %3$s)'
                               ' limit 2) as copies) > 1', source, key_column,
                               (select format_type(atttypid, atttypmod) from pg_attribute
                                where attrelid = source and attname = key_column))
                   using not_counted into found;
                duplicated := duplicated || found;
            end if;
        else
            execute format('select coalesce(array_agg(key), ''{}'') from (select %1$I::text as key from %2$s'
                           ' where %1$I is not null %3$s group by 1 having count(*) > 1) as duplicated', key_column, source,
                           case when read_condition is not null
                                then format('and %1$I in (select %1$I from %2$s where %3$s)', key_column, source, read_condition)
                                else '' end)
               into duplicated;
        end if;
    end if;
    reason := format('case when %1$I is null then ''id_missing'' when octet_length(%1$I::text) > 1000 then ''id_too_long''',
                     key_column);
    if cardinality(duplicated) > 0 then
        reason := reason || format(' when %I::text = any(%L::text[]) then ''id_duplicated''', key_column, duplicated);
    end if;
    if source_table = 'incidents' then
        reason := reason || ' when octet_length(notification_type) > 1000 then ''notification_type_too_long''';
    end if;
    return reason || ' when created_at < ''1900-01-01 00:00:00+00'' or created_at >= ''10000-01-01 00:00:00+00'''
                  || ' then ''created_at_out_of_range'' end';
end
$$;

comment on function flywheel.unusable_row_reason_sql(text, text, text, regclass) is
    'SQL expression over a row of a source table: why the refresh cannot use it (id_missing, id_too_long, id_duplicated, notification_type_too_long, created_at_out_of_range), NULL when it can; duplicates looked for among the keys of the rows read_condition selects (NULL: every row), and, through an index on the key, in the whole table only for those not in counted (rows counted before: key as text and created_at; NULL: none)';

-- The filter is "(case when (reason) is null then true end) is not null" rather than "(reason) is
-- null": the planner estimates IS NOT NULL of an expression it has no statistics for as 99.5% of the
-- rows and IS NULL as 0.5%, and with 0.5% the full passes lost their parallel plans (twice as slow at
-- scale S) and every join after a scan was planned for a few rows.
create function flywheel.usable_rows_sql(source_schema text, source_table text, reason_sql text)
returns text
language sql
immutable
set search_path = pg_catalog, pg_temp
return format('(select * from %I.%I where (case when (%s) is null then true end) is not null)',
              source_schema, source_table, reason_sql);

comment on function flywheel.usable_rows_sql(text, text, text) is
    'SQL text: a subquery of the rows of a source table that flywheel.refresh() can use (reason_sql from unusable_row_reason_sql is NULL)';

create function flywheel.unusable_rows(source_schema text, source_table text, reason_sql text, condition text default 'true')
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    counted jsonb;
begin
    execute format('select jsonb_object_agg(reason, rows order by reason) from ('
                   'select reason, count(*) as rows from (select %s as reason from %I.%I where %s) as row_reason'
                   ' where reason is not null group by reason) as counted',
                   reason_sql, source_schema, source_table, coalesce(condition, 'true'))
       into counted;
    return counted;
end
$$;

comment on function flywheel.unusable_rows(text, text, text, text) is
    'Rows of a source table the refresh skips, by reason ({"id_missing": 2}), among those the condition selects (NULL: every row); NULL when none';

create function flywheel.unusable_source_rows(source_schema text)
returns table (source_table text, reason text, rows bigint)
language sql
stable
set search_path = pg_catalog, pg_temp
begin atomic
    select source.name, counted.key, counted.value::bigint
    from unnest(array['incidents', 'auto_repair_executions', 'knowledge_entries']) as source (name)
    cross join lateral jsonb_each_text(flywheel.unusable_rows(
        source_schema, source.name, flywheel.unusable_row_reason_sql(source_schema, source.name))) as counted
    where to_regclass(format('%I.%I', source_schema, source.name)) is not null
    order by 1, 2;
end;

comment on function flywheel.unusable_source_rows(text) is
    'Every row of the source tables in a schema that flywheel.refresh() skips, counted by table and reason (flywheel-sync check)';
