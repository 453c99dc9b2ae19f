-- flywheel.refresh(as_of, full): compute every metric, reading only what changed since the last refresh.
--
-- Answers: nothing by itself; it writes what everything else reads. Called by `flywheel-sync
-- refresh` (every minute), `flywheel-sync refresh --full`, cron, systemd or pg_cron. Writes,
-- in one transaction so a reader (Grafana) sees the old results or the new, never a mix, and never waits:
--   flywheel.daily_incidents, daily_executions, daily_knowledge   (changed days only, or all)
--   flywheel.snapshots (one row, by flywheel.write_snapshot; summary is it), the materialized view
--   flywheel.current_flow (refreshed concurrently), flywheel.refresh_log (one row)
--   flywheel.refresh_state, tracked_incidents, tracked_executions, tracked_knowledge
--   flywheel.settings_versions (when the settings changed), history_buckets (the snapshot folded into
--   every tier by flywheel.record_history, which prunes the snapshots and each tier after its
--   history_*_retention setting)
-- and prunes refresh_log and sync_log older than the retention setting.
--
-- Two modes, recorded in refresh_log.mode (with mode_reason when full):
--   * incremental (the routine): per source table, read the rows past its watermark less the
--     lookback (incidents by updated_at, executions and knowledge entries by created_at, plus the
--     unvectorized backlog), through indexes. A row tracked before (tracked_*: active incidents, the
--     backlog, anything changed within the lookback) changes the rollups by the difference between
--     its state now and the state counted; a row created past the watermark is added; any other
--     changed row (an old incident updated after the lookback) has its whole day recounted. A tracked
--     row that is gone is subtracted. Cost follows the changes, the active set and the backlog, not history.
--   * full: every rollup recomputed in one parallel scan per table (rows put into days by
--     local_day_key_sql's fixed offsets, not a time-zone conversion per row; the executions' scan also
--     fills recent_executions; the same scan finds the unusable rows, which are counted by reason in
--     a second pass only when there are any), the tracked rows and watermarks rebuilt, and the difference with the
--     rollups it replaces recorded in refresh_log.drift.
--     Asked for with full => true, and taken by the first refresh after the full_refresh_at setting's
--     local time each day (deletes of untracked rows, executions whose success changes after the
--     lookback, and changes committed later than the lookback are only seen here); forced on the
--     first run, when the timezone or source_schema setting changed since the last run, and when a
--     source lacks incidents.updated_at or one of the indexes below (flywheel-sync check).
-- The metrics' definitions are the functions of sql/metrics/, which flywheel.write_snapshot() reads
-- the snapshot from. Whole-history totals are the sums of the rollups plus the rows whose created_at
-- is NULL (read by the created_at index). today_processed, execution_success_today and flywheel_conversions_today are
-- sums of rollup days from today on; incidents_stuck and type4_count are kept in refresh_state and
-- changed by the incidents step's differences plus the incidents newly past stuck_after
-- (flywheel.stuck_counts), not counted over the active set; the rate's 24-hour and 7-day windows sum 10-minute buckets of
-- recent_executions and read only their first, partial bucket; km_created_24h reads its first,
-- partial day (index only) plus the rollup days after it; count_1h reads its hour. The playbook
-- counts are flywheel.playbook_totals, which triggers on the mirror keep.
--
-- Odd source rows (release 0004, issue 14) never stop it. Every statement reads each source table
-- through the subquery of flywheel.usable_rows_sql(): the rows flywheel.unusable_row_reason_sql()
-- finds no reason against. A row with a NULL, duplicated or over-long key, an over-long
-- notification_type or a created_at outside 1900..9999 is skipped, and counted per table and reason
-- in refresh_log.unusable (over every row when full, over the rows read when incremental; there a
-- key is looked up in the whole table only for a row not counted before, i.e. not tracked with the
-- same key and created_at, as a copy written since is not: release 0006, issue 15, where every key
-- read was looked up in every partition). A row whose updated_at or created_at lies in the future counts like any other;
-- the watermarks stop at flywheel.clock_ceiling() (now() + 5 minutes), so such a row is read again by
-- every refresh rather than hide the rows written after it.
--
-- Indexes it relies on (their absence makes it full): incidents (updated_at), incidents (created_at),
-- auto_repair_executions (created_at), knowledge_entries (created_at), knowledge_entries (...) WHERE
-- embedding IS NULL (read index-only when it holds created_at and id). The active incidents are read
-- from tracked_incidents; without tracking, through incidents (status, created_at) WHERE status IN
-- ('investigating', 'mitigating') when present.
--
-- Snapshot: run it in one REPEATABLE READ transaction (the CLI does; so does CALL flywheel.run_refresh(),
-- which pg_cron schedules as docs/refresh.md's recipe says). Under READ COMMITTED each statement reads its
-- own snapshot, so a change committed between two of them can leave a drift until the next full run;
-- refresh_log.mode_reason notes it.
--
-- Locks: only the ACCESS SHARE of a plain SELECT on source tables, with lock_timeout set to the
-- refresh_lock_timeout setting so it gives up rather than queue behind DDL. One refresh at a time:
-- the row lock of flywheel.refresh_lock (flywheel.take_refresh_lock), held to the end of the
-- transaction and waited for up to refresh_lock_wait; no role but the functions' owner can take it.
--
-- as_of is the metrics' clock ("now" of metrics.md); it defaults to the transaction's start and is
-- refused beyond now() + 5 minutes or before now() - 100 years (flywheel.metrics_clock): a clock in
-- the future would prune every snapshot and log before it and stop the nightly full refresh. Windows
-- are open-ended like metrics.md's, so rows created after as_of still count.
--
-- Returns the refresh_log row as jsonb (status ok or failed). Every failure after the start --
-- the lock wait giving up, a bad as_of, a statement_timeout, an overflow -- is recorded in
-- refresh_log with its SQLSTATE and its cause named (flywheel.record_refresh_failure), raised as a
-- WARNING, and returned with status failed; nothing else of that run stays. On a standby or in a
-- read-only transaction nothing can be recorded: it raises read_only_sql_transaction with one line
-- (flywheel.require_writable). docs/refresh.md lists what cannot be recorded and where it shows.
--
-- When changing this, also change: the tables of migrations (columns written here), flywheel_sync/check.py
-- (the indexes wanted), docs/refresh.md, docs/performance.md, flywheel.unusable_row_reason_sql (the rows skipped),
-- flywheel.stuck_counts (the differences the incidents step hands it).
--
-- drop: drop function if exists flywheel.refresh(timestamptz, boolean)
create function flywheel.refresh(as_of timestamptz default null, "full" boolean default false)
returns jsonb
language plpgsql
volatile
security definer
-- lock_timeout is listed so that the values set inside end with the function, not the caller's transaction.
set search_path = pg_catalog, pg_temp
set lock_timeout = 0
-- JIT compiles the plan of every statement whose estimated cost passes jit_above_cost: with the
-- defaults of Debian's PostgreSQL 15 (jit = on, llvmjit installed) that turned a 100 ms routine
-- refresh into 4 s (issue 15), compiling plans that then read a few hundred rows through indexes.
set jit = off
as $$
declare
    active constant text[] := array['investigating', 'mitigating'];
    started timestamptz := clock_timestamp();
    step_started timestamptz := clock_timestamp();
    steps jsonb := '[]';
    rows_written bigint;
    rows_read bigint;
    days_recounted bigint;

    -- Read in the body, where a failure is recorded in refresh_log.
    metrics_now timestamptz;
    zone text;
    min_sample bigint;
    stuck_after interval;
    flow_limit integer;
    retention interval;
    source_schema text;
    full_refresh_at time;
    -- Watermarks never pass it (flywheel.clock_ceiling): rows from the future are read every run.
    ceiling timestamptz := flywheel.clock_ceiling();
    -- Each source as the rows the refresh can use (flywheel.unusable_row_reason_sql): a subquery
    -- that every statement below reads instead of the table.
    incidents_reason text;
    executions_reason text;
    knowledge_reason text;
    -- What an incremental run reads of each source (NULL when full: every row).
    incidents_read text;
    executions_read text;
    knowledge_read text;
    incidents_rows text;
    executions_rows text;
    knowledge_rows text;
    unusable jsonb;
    -- A full run's passes put the rows they cannot use into this day, a day no usable row has (its
    -- created_at would be out of range), instead of reading each table a second time to count them:
    -- only when that day holds any are they counted by reason (flywheel.unusable_rows).
    unusable_day constant date := '-infinity';
    incidents_unusable jsonb;
    executions_unusable jsonb;
    knowledge_unusable jsonb;
    nightly_due timestamptz;
    today date;
    day_key_expression text;
    day_keys_from timestamptz;
    day_keys_to timestamptz;

    state flywheel.refresh_state;
    lookback interval;
    lacking text[];
    mode text;
    mode_reason text;
    drift jsonb;
    table_drift jsonb;
    incidents_watermark timestamptz;
    executions_watermark timestamptz;
    knowledge_watermark timestamptz;
    incident_key_type text;
    execution_key_type text;
    knowledge_key_type text;
    -- Buckets of recent_executions: 10 minutes from a fixed origin, kept for 8 days.
    bucket constant interval := interval '10 minutes';
    bucket_origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
    recent_executions_from timestamptz;

    undated_incidents bigint;
    undated_alertname_missing bigint;
    undated_investigating bigint;
    undated_mitigating bigint;
    undated_knowledge bigint;
    undated_unvectorized bigint;

    incidents_stuck bigint;
    type4_count bigint;
    -- What the incremental incidents step changed in them (flywheel.stuck_counts); NULL when full.
    stuck_changed bigint;
    type4_changed bigint;

    log_row flywheel.refresh_log;
    failure_message text;
    failure_state text;
    failure_detail text;
    failure jsonb;
begin
    -- On a standby nothing can be written, a failure included: the one line a DBA needs instead.
    perform flywheel.require_writable();
    begin
        perform flywheel.take_refresh_lock();
        metrics_now := flywheel.metrics_clock(as_of);
        zone := flywheel.setting('timezone') #>> '{}';
        min_sample := (flywheel.setting('min_sample') #>> '{}')::bigint;
        stuck_after := (flywheel.setting('stuck_after') #>> '{}')::interval;
        flow_limit := (flywheel.setting('current_flow_limit') #>> '{}')::integer;
        retention := (flywheel.setting('retention') #>> '{}')::interval;
        source_schema := flywheel.setting('source_schema') #>> '{}';
        full_refresh_at := (flywheel.setting('full_refresh_at') #>> '{}')::time;
        perform set_config('lock_timeout', flywheel.setting_milliseconds('refresh_lock_timeout'), true);

        -- now's date in the zone (today_start is its midnight): rollup days from it on are "today".
        today := (metrics_now at time zone zone)::date;

        -- Which mode: incremental needs the state of a run with the same settings, and the column and
        -- indexes that make "what changed" cheap to find.
        select * into state from flywheel.refresh_state;
        -- A watermark past the ceiling (written before release 0004) is read as the ceiling.
        if state.incidents_watermark > ceiling then
            state.incidents_watermark := ceiling;
        end if;
        if state.executions_watermark > ceiling then
            state.executions_watermark := ceiling;
        end if;
        if state.knowledge_watermark > ceiling then
            state.knowledge_watermark := ceiling;
        end if;
        lookback := coalesce(state.lookback, interval '10 minutes');
        -- An index serves when the table has a valid one, or, for a partitioned table, when every
        -- leaf partition has one of its own (what check's partition-by-partition recipe leaves
        -- before the parent's index is attached and valid).
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

        if "full" then
            mode_reason := 'asked for (full => true)';
        elsif state is null then
            mode_reason := 'no incremental state yet: first refresh, or the last one could not track changes';
        elsif state.timezone is distinct from zone then
            mode_reason := format('the timezone setting changed from %s to %s', state.timezone, zone);
        elsif state.source_schema is distinct from source_schema then
            mode_reason := format('the source_schema setting changed from %s to %s', state.source_schema, source_schema);
        elsif full_refresh_at is not null then
            -- The nightly full run, without a second schedule: the first refresh at or after
            -- full_refresh_at (local time) that finds no full run since then is full.
            nightly_due := (today + full_refresh_at) at time zone zone;
            if nightly_due > metrics_now then
                nightly_due := (today - 1 + full_refresh_at) at time zone zone;
            end if;
            if state.full_at < nightly_due then
                mode_reason := format('the nightly full refresh: none since %s (the full_refresh_at setting)',
                                      to_char(nightly_due at time zone zone, 'YYYY-MM-DD HH24:MI'));
            end if;
        end if;
        if cardinality(lacking) > 0 then
            mode_reason := concat_ws('; ', mode_reason, format('the source lacks %s, so every refresh is full (see flywheel-sync check)',
                                                               array_to_string(lacking, ', ')));
        end if;
        mode := case when mode_reason is null then 'incremental' else 'full' end;
        -- The rows an incremental run reads (besides the tracked ones, which are among them or were
        -- read before): where it looks for duplicated keys and counts the rows it skips.
        if mode = 'incremental' then
            incidents_read := format('updated_at > %L', coalesce(state.incidents_watermark - lookback, '-infinity'));
            executions_read := format('created_at > %L', coalesce(state.executions_watermark - lookback, '-infinity'));
            knowledge_read := format('embedding is null or created_at > %L',
                                     coalesce(state.knowledge_watermark - lookback, '-infinity'));
        end if;
        -- A row read again as the tracked rows hold it (key and created_at) was looked up for a
        -- duplicated key when first read: only the others' keys are looked up in the whole table.
        incidents_reason := flywheel.unusable_row_reason_sql(source_schema, 'incidents', incidents_read,
                                                             'flywheel.tracked_incidents');
        executions_reason := flywheel.unusable_row_reason_sql(source_schema, 'auto_repair_executions', executions_read,
                                                              'flywheel.tracked_executions');
        knowledge_reason := flywheel.unusable_row_reason_sql(source_schema, 'knowledge_entries', knowledge_read,
                                                             'flywheel.tracked_knowledge');
        incidents_rows := flywheel.usable_rows_sql(source_schema, 'incidents', incidents_reason);
        executions_rows := flywheel.usable_rows_sql(source_schema, 'auto_repair_executions', executions_reason);
        knowledge_rows := flywheel.usable_rows_sql(source_schema, 'knowledge_entries', knowledge_reason);
        if current_setting('transaction_isolation') = 'read committed' then
            mode_reason := concat_ws('; ', mode_reason,
                                     'run under READ COMMITTED: a change committed during the run may drift until the next full refresh');
        end if;

        if mode = 'full' then
            -- How each pass below puts a row into its day: a fixed offset over the stretches of the
            -- data's range without a change of UTC offset, read from the created_at indexes.
            if cardinality(lacking) = 0 then
                execute format($sql$
                    select least((select min(created_at) from %1$s as incidents),
                                 (select min(created_at) from %2$s as executions),
                                 (select min(created_at) from %3$s as entries)),
                           greatest((select max(created_at) from %1$s as incidents),
                                    (select max(created_at) from %2$s as executions),
                                    (select max(created_at) from %3$s as entries))
                $sql$, incidents_rows, executions_rows, knowledge_rows)
                into day_keys_from, day_keys_to;
            end if;
            day_key_expression := flywheel.local_day_key_sql('created_at', zone,
                                                  greatest(day_keys_from, metrics_now - interval '30 years'),
                                                  least(day_keys_to, metrics_now + interval '1 year'));

            -- Incidents, whole history: the daily rollup from one scan; the NULL day is the undated rows.
            -- Each table's pass is a statement of its own that writes only a temporary table of a few
            -- hundred rows (measured faster than one statement that also compares and writes the rollup).
            -- The pass is CPU-bound, so it runs in parallel workers, which PostgreSQL plans only when it
            -- expects few groups. Grouped on an expression of created_at, it expects one group per
            -- distinct created_at (millions) and aggregates serially; the volatile planner_fence column
            -- keeps the inner query from being merged into the outer one, so the groups are estimated
            -- as an unknown number (200) instead. Measured at L: 3.9 s against 8 s.
            -- The alertname test reads the first character before trimming, the cheap case first.
            -- Every row is read: an unusable one goes into unusable_day (a second pass to count them
            -- cost 1.1-1.5 s a table at M).
            execute format($sql$
                create temp table fresh_incidents on commit drop as
                select (day_key at time zone 'UTC')::date as day, incidents_created, alertname_missing,
                       status_investigating, status_mitigating, status_resolved, status_closed, status_other,
                       execution_success
                from (
                    select day_key,
                           count(*) as incidents_created,
                           count(*) filter (where alertname_missing) as alertname_missing,
                           count(*) filter (where status = 'investigating') as status_investigating,
                           count(*) filter (where status = 'mitigating') as status_mitigating,
                           count(*) filter (where status = 'resolved') as status_resolved,
                           count(*) filter (where status = 'closed') as status_closed,
                           count(*) filter (where status is null
                                            or status not in ('investigating', 'mitigating', 'resolved', 'closed')) as status_other,
                           count(*) filter (where execution_success) as execution_success
                    from (select case when (%3$s) is null then %1$s else %4$L::timestamptz end as day_key, status,
                                 case when alertname is null then true
                                      when alertname = '' or ascii(alertname) in (9, 10, 13, 32)
                                          then btrim(alertname, E' \t\r\n') = ''
                                      else false end as alertname_missing,
                                 outcome ->> 'execution_success' = 'true' as execution_success,
                                 clock_timestamp() as planner_fence
                          from %2$I.incidents as incidents) as incident
                    group by day_key
                ) as grouped
            $sql$, day_key_expression, source_schema, incidents_reason, unusable_day);
            if exists (select from pg_temp.fresh_incidents where day = unusable_day) then
                incidents_unusable := flywheel.unusable_rows(source_schema, 'incidents', incidents_reason, null);
            end if;
            execute format($sql$
                with fresh as (
                    select * from pg_temp.fresh_incidents where day is distinct from $3
                ), compared as (
                    select (fresh.incidents_created, fresh.alertname_missing, fresh.status_investigating,
                            fresh.status_mitigating, fresh.status_resolved, fresh.status_closed, fresh.status_other,
                            fresh.execution_success)
                           is distinct from
                           (kept.incidents_created, kept.alertname_missing, kept.status_investigating,
                            kept.status_mitigating, kept.status_resolved, kept.status_closed, kept.status_other,
                            kept.execution_success) as differs,
                           abs(coalesce(fresh.incidents_created, 0) - coalesce(kept.incidents_created, 0)) as created,
                           abs(coalesce(fresh.alertname_missing, 0) - coalesce(kept.alertname_missing, 0)) as missing,
                           abs(coalesce(fresh.status_investigating, 0) - coalesce(kept.status_investigating, 0))
                           + abs(coalesce(fresh.status_mitigating, 0) - coalesce(kept.status_mitigating, 0))
                           + abs(coalesce(fresh.status_resolved, 0) - coalesce(kept.status_resolved, 0))
                           + abs(coalesce(fresh.status_closed, 0) - coalesce(kept.status_closed, 0))
                           + abs(coalesce(fresh.status_other, 0) - coalesce(kept.status_other, 0)) as statuses,
                           abs(coalesce(fresh.execution_success, 0) - coalesce(kept.execution_success, 0)) as successes
                    from (select * from fresh where day is not null) as fresh
                    full join flywheel.daily_incidents as kept using (day)
                ), removed as (
                    delete from flywheel.daily_incidents as kept
                    where not exists (select from fresh where fresh.day = kept.day)
                    returning 1
                ), written as (
                    insert into flywheel.daily_incidents
                        (day, day_start, incidents_created, alertname_missing, status_investigating, status_mitigating,
                         status_resolved, status_closed, status_other, execution_success, refreshed_at)
                    select day, day::timestamp at time zone $1, incidents_created, alertname_missing,
                           status_investigating, status_mitigating, status_resolved, status_closed, status_other,
                           execution_success, $2
                    from fresh
                    where day is not null
                    on conflict (day) do update set
                        day_start = excluded.day_start, incidents_created = excluded.incidents_created,
                        alertname_missing = excluded.alertname_missing,
                        status_investigating = excluded.status_investigating,
                        status_mitigating = excluded.status_mitigating, status_resolved = excluded.status_resolved,
                        status_closed = excluded.status_closed, status_other = excluded.status_other,
                        execution_success = excluded.execution_success, refreshed_at = excluded.refreshed_at
                    returning 1
                )
                select coalesce((select incidents_created from fresh where day is null), 0),
                       coalesce((select alertname_missing from fresh where day is null), 0),
                       coalesce((select status_investigating from fresh where day is null), 0),
                       coalesce((select status_mitigating from fresh where day is null), 0),
                       (select count(*) from written) + (select count(*) from removed),
                       (select jsonb_build_object('days', count(*) filter (where differs),
                                                  'incidents_created', coalesce(sum(created), 0),
                                                  'alertname_missing', coalesce(sum(missing), 0),
                                                  'statuses', coalesce(sum(statuses), 0),
                                                  'execution_success', coalesce(sum(successes), 0))
                        from compared)
            $sql$, source_schema)
            using zone, metrics_now, unusable_day
            into undated_incidents, undated_alertname_missing, undated_investigating, undated_mitigating,
                 rows_written, table_drift;
            drop table pg_temp.fresh_incidents;
            drift := jsonb_build_object('daily_incidents', table_drift);
            steps := steps || jsonb_build_object('step', 'daily_incidents', 'rows', rows_written,
                     'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
            step_started := clock_timestamp();

            -- Executions, whole history.
            -- The same scan fills the 10-minute buckets of the last 8 days (reading them again through
            -- the created_at index cost another second at L). Utility statements take no parameters,
            -- so the bounds are literals, in UTC.
            recent_executions_from := date_bin(bucket, metrics_now - interval '8 days', bucket_origin);
            execute format($sql$
                create temp table fresh_execution_groups on commit drop as
                select day_key, recent_bucket, count(*) as executions, count(*) filter (where success) as successes
                from (select case when (%6$s) is null then %1$s else %7$L::timestamptz end as day_key,
                             case when created_at >= timestamptz %3$L
                                  then date_bin(interval %4$L, created_at, timestamptz %5$L) end as recent_bucket,
                             success, clock_timestamp() as planner_fence
                      from %2$I.auto_repair_executions as executions) as execution
                group by day_key, recent_bucket
            $sql$, day_key_expression, source_schema,
               to_char(recent_executions_from at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00',
               extract(epoch from bucket)::text || ' seconds',
               to_char(bucket_origin at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00',
               executions_reason, unusable_day);
            if exists (select from pg_temp.fresh_execution_groups where day_key = unusable_day) then
                executions_unusable := flywheel.unusable_rows(source_schema, 'auto_repair_executions',
                                                              executions_reason, null);
            end if;
            -- Undated executions count nowhere; unusable ones only among the rows skipped.
            delete from pg_temp.fresh_execution_groups where day_key is null or day_key = unusable_day;
            create temp table fresh_executions on commit drop as
            select (day_key at time zone 'UTC')::date as day, sum(executions)::bigint as executions,
                   sum(successes)::bigint as successes
            from pg_temp.fresh_execution_groups
            group by day_key;
            execute format($sql$
                with fresh as (
                    select * from pg_temp.fresh_executions
                ), compared as (
                    select (fresh.executions, fresh.successes) is distinct from (kept.executions, kept.successes) as differs,
                           abs(coalesce(fresh.executions, 0) - coalesce(kept.executions, 0)) as executions,
                           abs(coalesce(fresh.successes, 0) - coalesce(kept.successes, 0)) as successes
                    from fresh full join flywheel.daily_executions as kept using (day)
                ), removed as (
                    delete from flywheel.daily_executions as kept
                    where not exists (select from fresh where fresh.day = kept.day)
                    returning 1
                ), written as (
                    insert into flywheel.daily_executions (day, day_start, executions, successes, refreshed_at)
                    select day, day::timestamp at time zone $1, executions, successes, $2 from fresh
                    on conflict (day) do update set
                        day_start = excluded.day_start, executions = excluded.executions,
                        successes = excluded.successes, refreshed_at = excluded.refreshed_at
                    returning 1
                )
                select (select count(*) from written) + (select count(*) from removed),
                       (select jsonb_build_object('days', count(*) filter (where differs),
                                                  'executions', coalesce(sum(executions), 0),
                                                  'successes', coalesce(sum(successes), 0))
                        from compared)
            $sql$, source_schema)
            using zone, metrics_now
            into rows_written, table_drift;
            drop table pg_temp.fresh_executions;
            drift := drift || jsonb_build_object('daily_executions', table_drift);
            delete from flywheel.recent_executions;
            insert into flywheel.recent_executions (bucket_start, executions, successes)
            select recent_bucket, sum(executions), sum(successes)
            from pg_temp.fresh_execution_groups
            where recent_bucket is not null
            group by recent_bucket;
            drop table pg_temp.fresh_execution_groups;
            steps := steps || jsonb_build_object('step', 'daily_executions', 'rows', rows_written,
                     'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
            step_started := clock_timestamp();

            -- Knowledge entries, whole history; the NULL day is the undated entries.
            execute format($sql$
                create temp table fresh_knowledge on commit drop as
                select (day_key at time zone 'UTC')::date as day, entries_created, entries_unvectorized
                from (
                    select day_key, count(*) as entries_created, count(*) filter (where unvectorized) as entries_unvectorized
                    from (select case when (%3$s) is null then %1$s else %4$L::timestamptz end as day_key,
                                 embedding is null as unvectorized, clock_timestamp() as planner_fence
                          from %2$I.knowledge_entries as entries) as entry
                    group by day_key
                ) as grouped
            $sql$, day_key_expression, source_schema, knowledge_reason, unusable_day);
            if exists (select from pg_temp.fresh_knowledge where day = unusable_day) then
                knowledge_unusable := flywheel.unusable_rows(source_schema, 'knowledge_entries', knowledge_reason, null);
            end if;
            execute format($sql$
                with fresh as (
                    select * from pg_temp.fresh_knowledge where day is distinct from $3
                ), compared as (
                    select (fresh.entries_created, fresh.entries_unvectorized)
                           is distinct from (kept.entries_created, kept.entries_unvectorized) as differs,
                           abs(coalesce(fresh.entries_created, 0) - coalesce(kept.entries_created, 0)) as created,
                           abs(coalesce(fresh.entries_unvectorized, 0) - coalesce(kept.entries_unvectorized, 0)) as unvectorized
                    from (select * from fresh where day is not null) as fresh
                    full join flywheel.daily_knowledge as kept using (day)
                ), removed as (
                    delete from flywheel.daily_knowledge as kept
                    where not exists (select from fresh where fresh.day = kept.day)
                    returning 1
                ), written as (
                    insert into flywheel.daily_knowledge (day, day_start, entries_created, entries_unvectorized, refreshed_at)
                    select day, day::timestamp at time zone $1, entries_created, entries_unvectorized, $2
                    from fresh
                    where day is not null
                    on conflict (day) do update set
                        day_start = excluded.day_start, entries_created = excluded.entries_created,
                        entries_unvectorized = excluded.entries_unvectorized, refreshed_at = excluded.refreshed_at
                    returning 1
                )
                select coalesce((select entries_created from fresh where day is null), 0),
                       coalesce((select entries_unvectorized from fresh where day is null), 0),
                       (select count(*) from written) + (select count(*) from removed),
                       (select jsonb_build_object('days', count(*) filter (where differs),
                                                  'entries_created', coalesce(sum(created), 0),
                                                  'entries_unvectorized', coalesce(sum(unvectorized), 0))
                        from compared)
            $sql$, source_schema)
            using zone, metrics_now, unusable_day
            into undated_knowledge, undated_unvectorized, rows_written, table_drift;
            drop table pg_temp.fresh_knowledge;
            drift := drift || jsonb_build_object('daily_knowledge', table_drift);
            steps := steps || jsonb_build_object('step', 'daily_knowledge', 'rows', rows_written,
                     'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
            step_started := clock_timestamp();

            -- A drift is what the incremental runs missed; after a settings change or a run that
            -- could not track changes, the old rollups were another computation, not a drift.
            if state is null or state.timezone is distinct from zone or state.source_schema is distinct from source_schema then
                drift := null;
            end if;

            -- The rows the next incremental run must know the counted state of, and the watermarks.
            delete from flywheel.tracked_incidents;
            delete from flywheel.tracked_executions;
            delete from flywheel.tracked_knowledge;
            if cardinality(lacking) = 0 then
                execute format('select case when max(updated_at) > $1 then $1 else max(updated_at) end from %s as incidents', incidents_rows)
                using ceiling into incidents_watermark;
                execute format('select case when max(created_at) > $1 then $1 else max(created_at) end from %s as executions', executions_rows)
                using ceiling into executions_watermark;
                execute format('select case when max(created_at) > $1 then $1 else max(created_at) end from %s as entries', knowledge_rows)
                using ceiling into knowledge_watermark;
                execute format($sql$
                    insert into flywheel.tracked_incidents
                        (incident_id, day, status, alertname_missing, execution_success, updated_at,
                         created_at, alertname, notification_type)
                    select incident_id::text, (created_at at time zone $1)::date, status,
                           alertname is null or btrim(alertname, E' \t\r\n') = '',
                           coalesce(outcome ->> 'execution_success' = 'true', false), updated_at,
                           created_at, alertname, notification_type
                    from %s as incidents
                    where status in ('investigating', 'mitigating') or updated_at > $2
                $sql$, incidents_rows)
                using zone, incidents_watermark - lookback;
                execute format($sql$
                    insert into flywheel.tracked_executions (id, day, success, created_at)
                    select id::text, (created_at at time zone $1)::date, success, created_at
                    from %s as executions
                    where created_at > $2
                $sql$, executions_rows)
                using zone, executions_watermark - lookback;
                execute format($sql$
                    insert into flywheel.tracked_knowledge (id, day, unvectorized, created_at)
                    select id::text, (created_at at time zone $1)::date, embedding is null, created_at
                    from %s as entries
                    where embedding is null or created_at > $2
                $sql$, knowledge_rows)
                using zone, knowledge_watermark - lookback;
            end if;
            steps := steps || jsonb_build_object('step', 'tracked_rows', 'rows',
                     (select count(*) from flywheel.tracked_incidents) + (select count(*) from flywheel.tracked_executions)
                     + (select count(*) from flywheel.tracked_knowledge),
                     'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
            step_started := clock_timestamp();
        else
            select format_type(atttypid, atttypmod) into incident_key_type from pg_attribute
             where attrelid = to_regclass(format('%I.incidents', source_schema)) and attname = 'incident_id';
            select format_type(atttypid, atttypmod) into execution_key_type from pg_attribute
             where attrelid = to_regclass(format('%I.auto_repair_executions', source_schema)) and attname = 'id';
            select format_type(atttypid, atttypmod) into knowledge_key_type from pg_attribute
             where attrelid = to_regclass(format('%I.knowledge_entries', source_schema)) and attname = 'id';

            -- Incidents changed since the watermark (less the lookback), in one statement so one
            -- snapshot serves the rollup and the tracked rows. A tracked row with a recent updated_at
            -- that is not among them was deleted (or its updated_at went back): it is looked up by key.
            execute format($sql$
                with changed as (
                    select incident_id::text as key, created_at, updated_at,
                           (created_at at time zone $1)::date as day, status,
                           alertname is null or btrim(alertname, E' \t\r\n') = '' as alertname_missing,
                           coalesce(outcome ->> 'execution_success' = 'true', false) as execution_success,
                           alertname, notification_type
                    from %1$s as incidents
                    where updated_at > $2
                ), probed as (
                    select incident_id::text as key, created_at, updated_at,
                           (created_at at time zone $1)::date as day, status,
                           alertname is null or btrim(alertname, E' \t\r\n') = '' as alertname_missing,
                           coalesce(outcome ->> 'execution_success' = 'true', false) as execution_success,
                           alertname, notification_type
                    from %1$s as incidents
                    where incident_id = any(cast(array(
                        select tracked.incident_id from flywheel.tracked_incidents as tracked
                        where tracked.updated_at > $2
                          and not exists (select from changed where changed.key = tracked.incident_id)) as %2$s[]))
                ), seen as (
                    select * from changed union all select * from probed
                ), gone as (
                    select tracked.incident_id as key from flywheel.tracked_incidents as tracked
                    where tracked.updated_at > $2 and not exists (select from seen where seen.key = tracked.incident_id)
                ), counted as (
                    select * from flywheel.tracked_incidents
                    where incident_id in (select key from seen union all select key from gone)
                ), recount_days as (
                    -- Changed rows whose counted state is unknown and that were not created since the
                    -- watermark: their day is counted again from the source.
                    select distinct seen.day from seen
                    where seen.day is not null and seen.created_at <= $2
                      and not exists (select from counted where counted.incident_id = seen.key)
                ), differences as (
                    select day, sum(created) as incidents_created, sum(missing) as alertname_missing,
                           sum(investigating) as status_investigating, sum(mitigating) as status_mitigating,
                           sum(resolved) as status_resolved, sum(closed) as status_closed, sum(other) as status_other,
                           sum(success) as execution_success
                    from (
                        select day, 1 as created, alertname_missing::int as missing,
                               (status = 'investigating')::int as investigating, (status = 'mitigating')::int as mitigating,
                               (status = 'resolved')::int as resolved, (status = 'closed')::int as closed,
                               coalesce(status not in ('investigating', 'mitigating', 'resolved', 'closed'), true)::int as other,
                               execution_success::int as success
                        from seen
                        where seen.created_at > $2 or exists (select from counted where counted.incident_id = seen.key)
                        union all
                        select day, -1, -alertname_missing::int,
                               -(status = 'investigating')::int, -(status = 'mitigating')::int,
                               -(status = 'resolved')::int, -(status = 'closed')::int,
                               -coalesce(status not in ('investigating', 'mitigating', 'resolved', 'closed'), true)::int,
                               -execution_success::int
                        from counted
                    ) as signed
                    where day is not null and day not in (select day from recount_days)
                    group by day
                    having (sum(created), sum(missing), sum(investigating), sum(mitigating), sum(resolved), sum(closed),
                            sum(other), sum(success)) <> (0, 0, 0, 0, 0, 0, 0, 0)
                ), recounted as (
                    -- The day's rows through the created_at index; the range is widened by a few hours
                    -- and the day tested exactly, so a midnight moved by daylight saving time is still right.
                    select recount_days.day, count(*) as incidents_created,
                           count(*) filter (where alertname is null or btrim(alertname, E' \t\r\n') = '') as alertname_missing,
                           count(*) filter (where status = 'investigating') as status_investigating,
                           count(*) filter (where status = 'mitigating') as status_mitigating,
                           count(*) filter (where status = 'resolved') as status_resolved,
                           count(*) filter (where status = 'closed') as status_closed,
                           count(*) filter (where status is null
                                            or status not in ('investigating', 'mitigating', 'resolved', 'closed')) as status_other,
                           count(*) filter (where outcome ->> 'execution_success' = 'true') as execution_success
                    -- A lateral subquery (offset 0 keeps it one) reads each day through the index; a
                    -- join was planned as a scan of every incident, and of every partition (issue 15:
                    -- one old incident updated cost up to 39 routine refreshes).
                    from recount_days
                    cross join lateral (
                        select * from %1$s as incident
                        where incident.created_at >= (recount_days.day::timestamp at time zone $1) - interval '3 hours'
                          and incident.created_at < ((recount_days.day + 1)::timestamp at time zone $1) + interval '3 hours'
                          and (incident.created_at at time zone $1)::date = recount_days.day
                        offset 0
                    ) as incident
                    group by recount_days.day
                ), final as (
                    select differences.day,
                           coalesce(kept.incidents_created, 0) + differences.incidents_created as incidents_created,
                           coalesce(kept.alertname_missing, 0) + differences.alertname_missing as alertname_missing,
                           coalesce(kept.status_investigating, 0) + differences.status_investigating as status_investigating,
                           coalesce(kept.status_mitigating, 0) + differences.status_mitigating as status_mitigating,
                           coalesce(kept.status_resolved, 0) + differences.status_resolved as status_resolved,
                           coalesce(kept.status_closed, 0) + differences.status_closed as status_closed,
                           coalesce(kept.status_other, 0) + differences.status_other as status_other,
                           coalesce(kept.execution_success, 0) + differences.execution_success as execution_success
                    from differences left join flywheel.daily_incidents as kept using (day)
                    union all
                    select day, incidents_created, alertname_missing, status_investigating, status_mitigating,
                           status_resolved, status_closed, status_other, execution_success
                    from recounted
                ), emptied as (
                    delete from flywheel.daily_incidents
                    where day in (select day from final where incidents_created = 0)
                       or (day in (select day from recount_days) and day not in (select day from recounted))
                    returning 1
                ), written as (
                    insert into flywheel.daily_incidents
                        (day, day_start, incidents_created, alertname_missing, status_investigating, status_mitigating,
                         status_resolved, status_closed, status_other, execution_success, refreshed_at)
                    select day, day::timestamp at time zone $1, incidents_created, alertname_missing,
                           status_investigating, status_mitigating, status_resolved, status_closed, status_other,
                           execution_success, $3
                    from final
                    where incidents_created <> 0
                    on conflict (day) do update set
                        incidents_created = excluded.incidents_created, alertname_missing = excluded.alertname_missing,
                        status_investigating = excluded.status_investigating,
                        status_mitigating = excluded.status_mitigating, status_resolved = excluded.status_resolved,
                        status_closed = excluded.status_closed, status_other = excluded.status_other,
                        execution_success = excluded.execution_success, refreshed_at = excluded.refreshed_at
                    returning 1
                ), watermark as (
                    select case when greatest($5, max(updated_at)) > $7 then $7 else greatest($5, max(updated_at)) end as value
                    from changed
                ), untracked as (
                    -- Rows no longer worth remembering: gone, or neither active nor within the lookback.
                    -- One IN over a union, so each key is looked up; three ORed conditions scanned
                    -- every tracked row.
                    delete from flywheel.tracked_incidents as tracked
                    where tracked.incident_id in (
                              select key from gone
                              union all
                              select key from seen
                              where not coalesce(status = any($6), false)
                                and not updated_at > (select value from watermark) - $4
                              union all
                              select lapsed.incident_id from flywheel.tracked_incidents as lapsed
                              where lapsed.updated_at > $2 and lapsed.updated_at <= (select value from watermark) - $4
                                and not coalesce(lapsed.status = any($6), false)
                                and not exists (select from seen where seen.key = lapsed.incident_id))
                ), tracked as (
                    insert into flywheel.tracked_incidents
                        (incident_id, day, status, alertname_missing, execution_success, updated_at,
                         created_at, alertname, notification_type)
                    select key, day, status, alertname_missing, execution_success, updated_at,
                           created_at, alertname, notification_type
                    from seen
                    where (coalesce(status = any($6), false) or updated_at > (select value from watermark) - $4)
                      -- Rows read again within the lookback, unchanged, are not rewritten.
                      and not exists (
                          select from counted
                          where counted.incident_id = seen.key
                            and (counted.day, counted.status, counted.alertname_missing, counted.execution_success,
                                 counted.updated_at, counted.created_at, counted.alertname, counted.notification_type)
                                is not distinct from
                                (seen.day, seen.status, seen.alertname_missing, seen.execution_success,
                                 seen.updated_at, seen.created_at, seen.alertname, seen.notification_type))
                    on conflict (incident_id) do update set
                        day = excluded.day, status = excluded.status, alertname_missing = excluded.alertname_missing,
                        execution_success = excluded.execution_success, updated_at = excluded.updated_at,
                        created_at = excluded.created_at, alertname = excluded.alertname,
                        notification_type = excluded.notification_type
                )
                select (select value from watermark), (select count(*) from seen) + (select count(*) from gone),
                       (select count(*) from recount_days),
                       (select count(*) from written) + (select count(*) from emptied),
                       -- The stuck and TYPE-4 counts' difference: every seen row that is investigating
                       -- is tracked as seen, every counted one was tracked as counted.
                       (select count(*) filter (where status = 'investigating' and created_at <= $8) from seen)
                       - (select count(*) filter (where status = 'investigating' and created_at <= $8) from counted),
                       (select count(*) filter (where status = 'investigating' and notification_type = 'TYPE-4') from seen)
                       - (select count(*) filter (where status = 'investigating' and notification_type = 'TYPE-4')
                          from counted)
            $sql$, incidents_rows, incident_key_type)
            using zone, coalesce(state.incidents_watermark - lookback, '-infinity'), metrics_now, lookback,
                  state.incidents_watermark, active, ceiling, state.stuck_before
            into incidents_watermark, rows_read, days_recounted, rows_written, stuck_changed, type4_changed;
            execute format($sql$
                select count(*), count(*) filter (where alertname is null or btrim(alertname, E' \t\r\n') = ''),
                       count(*) filter (where status = 'investigating'), count(*) filter (where status = 'mitigating')
                from %s as incidents where created_at is null
            $sql$, incidents_rows)
            into undated_incidents, undated_alertname_missing, undated_investigating, undated_mitigating;
            steps := steps || jsonb_build_object('step', 'daily_incidents', 'rows', rows_written, 'read', rows_read,
                     'days_recounted', days_recounted,
                     'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
            step_started := clock_timestamp();

            -- Executions created since the watermark (less the lookback); rows are rarely changed
            -- afterwards, and a change after the lookback is the full run's to see.
            execute format($sql$
                with changed as (
                    select id::text as key, created_at, (created_at at time zone $1)::date as day, success
                    from %1$s as executions
                    where created_at > $2
                ), probed as (
                    select id::text as key, created_at, (created_at at time zone $1)::date as day, success
                    from %1$s as executions
                    where id = any(cast(array(
                        select tracked.id from flywheel.tracked_executions as tracked
                        where tracked.created_at > $2
                          and not exists (select from changed where changed.key = tracked.id)) as %2$s[]))
                ), seen as (
                    select * from changed union all select * from probed
                ), gone as (
                    select tracked.id as key from flywheel.tracked_executions as tracked
                    where tracked.created_at > $2 and not exists (select from seen where seen.key = tracked.id)
                ), counted as (
                    select * from flywheel.tracked_executions
                    where id in (select key from seen union all select key from gone)
                ), differences as (
                    select day, sum(executions) as executions, sum(successes) as successes
                    from (
                        select day, 1 as executions, (success is true)::int as successes from seen
                        union all
                        select day, -1, -(success is true)::int from counted
                    ) as signed
                    where day is not null
                    group by day
                    having (sum(executions), sum(successes)) <> (0, 0)
                ), final as (
                    select differences.day, coalesce(kept.executions, 0) + differences.executions as executions,
                           coalesce(kept.successes, 0) + differences.successes as successes
                    from differences left join flywheel.daily_executions as kept using (day)
                ), emptied as (
                    delete from flywheel.daily_executions where day in (select day from final where executions = 0)
                    returning 1
                ), written as (
                    insert into flywheel.daily_executions (day, day_start, executions, successes, refreshed_at)
                    select day, day::timestamp at time zone $1, executions, successes, $3
                    from final where executions <> 0
                    on conflict (day) do update set
                        executions = excluded.executions, successes = excluded.successes, refreshed_at = excluded.refreshed_at
                    returning 1
                ), bucket_differences as (
                    select date_bin($7, created_at, $8) as bucket_start, sum(executions) as executions,
                           sum(successes) as successes
                    from (
                        select created_at, 1 as executions, (success is true)::int as successes from seen
                        union all
                        select created_at, -1, -(success is true)::int from counted
                    ) as signed
                    where created_at >= $6
                    group by 1
                    having (sum(executions), sum(successes)) <> (0, 0)
                ), buckets_written as (
                    insert into flywheel.recent_executions as kept (bucket_start, executions, successes)
                    select bucket_start, executions, successes from bucket_differences
                    on conflict (bucket_start) do update set
                        executions = kept.executions + excluded.executions, successes = kept.successes + excluded.successes
                ), watermark as (
                    select case when greatest($5, max(created_at)) > $9 then $9 else greatest($5, max(created_at)) end as value
                    from changed
                ), untracked as (
                    delete from flywheel.tracked_executions as tracked
                    where tracked.id in (select key from gone)
                       or (tracked.created_at > $2 and tracked.created_at <= (select value from watermark) - $4)
                ), tracked as (
                    insert into flywheel.tracked_executions (id, day, success, created_at)
                    select key, day, success, created_at from seen
                    where created_at > (select value from watermark) - $4
                      and not exists (select from counted where counted.id = seen.key
                                        and (counted.day, counted.success, counted.created_at)
                                            is not distinct from (seen.day, seen.success, seen.created_at))
                    on conflict (id) do update set day = excluded.day, success = excluded.success, created_at = excluded.created_at
                )
                select (select value from watermark), (select count(*) from seen) + (select count(*) from gone),
                       (select count(*) from written) + (select count(*) from emptied)
            $sql$, executions_rows, execution_key_type)
            using zone, coalesce(state.executions_watermark - lookback, '-infinity'), metrics_now, lookback,
                  state.executions_watermark, state.recent_executions_from, bucket, bucket_origin, ceiling
            into executions_watermark, rows_read, rows_written;
            -- Buckets older than 8 days serve no window any more.
            recent_executions_from := greatest(state.recent_executions_from,
                                               date_bin(bucket, metrics_now - interval '8 days', bucket_origin));
            delete from flywheel.recent_executions where bucket_start < recent_executions_from;
            steps := steps || jsonb_build_object('step', 'daily_executions', 'rows', rows_written, 'read', rows_read,
                     'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
            step_started := clock_timestamp();

            -- Knowledge entries created since the watermark, and the unvectorized backlog (through its
            -- partial index): a tracked entry missing from both was vectorized or deleted, and is looked up.
            -- Backlog entries tracked as counted and unchanged (settled) are matched once and left
            -- out of the rest, so the work follows the backlog's changes, not its size (13.5 ms at L
            -- for a 2 600-entry backlog before, when every entry went through every step).
            execute format($sql$
                with backlog as (
                    -- From the partial index alone (an index-only scan: the rows are wide).
                    select id::text as key, created_at
                    from %1$s as entries
                    where embedding is null
                ), settled as (
                    select tracked.id
                    from flywheel.tracked_knowledge as tracked
                    join backlog on backlog.key = tracked.id
                    where tracked.unvectorized and tracked.created_at = backlog.created_at
                      and not tracked.created_at > $2
                ), changed as (
                    select id::text as key, created_at, (created_at at time zone $1)::date as day,
                           embedding is null as unvectorized
                    from %1$s as entries
                    where created_at > $2
                    union
                    select backlog.key, backlog.created_at, (backlog.created_at at time zone $1)::date, true
                    from backlog
                    where not exists (select from settled where settled.id = backlog.key)
                ), probed as (
                    select id::text as key, created_at, (created_at at time zone $1)::date as day,
                           embedding is null as unvectorized
                    from %1$s as entries
                    where id = any(cast(array(
                        select tracked.id from flywheel.tracked_knowledge as tracked
                        where (tracked.unvectorized or tracked.created_at > $2)
                          and not exists (select from changed where changed.key = tracked.id)
                          and not exists (select from settled where settled.id = tracked.id)) as %2$s[]))
                ), seen as (
                    select * from changed union all select * from probed
                ), gone as (
                    select tracked.id as key from flywheel.tracked_knowledge as tracked
                    where (tracked.unvectorized or tracked.created_at > $2)
                      and not exists (select from seen where seen.key = tracked.id)
                      and not exists (select from settled where settled.id = tracked.id)
                ), counted as (
                    select * from flywheel.tracked_knowledge
                    where id in (select key from seen union all select key from gone)
                ), recount_days as (
                    select distinct seen.day from seen
                    where seen.day is not null and seen.created_at <= $2
                      and not exists (select from counted where counted.id = seen.key)
                ), differences as (
                    select day, sum(created) as entries_created, sum(unvectorized) as entries_unvectorized
                    from (
                        select day, 1 as created, unvectorized::int as unvectorized from seen
                        where seen.created_at > $2 or exists (select from counted where counted.id = seen.key)
                        union all
                        select day, -1, -unvectorized::int from counted
                    ) as signed
                    where day is not null and day not in (select day from recount_days)
                    group by day
                    having (sum(created), sum(unvectorized)) <> (0, 0)
                ), recounted as (
                    select recount_days.day, count(*) as entries_created,
                           count(*) filter (where entry.embedding is null) as entries_unvectorized
                    from recount_days
                    cross join lateral (
                        select * from %1$s as entry
                        where entry.created_at >= (recount_days.day::timestamp at time zone $1) - interval '3 hours'
                          and entry.created_at < ((recount_days.day + 1)::timestamp at time zone $1) + interval '3 hours'
                          and (entry.created_at at time zone $1)::date = recount_days.day
                        offset 0
                    ) as entry
                    group by recount_days.day
                ), final as (
                    select differences.day,
                           coalesce(kept.entries_created, 0) + differences.entries_created as entries_created,
                           coalesce(kept.entries_unvectorized, 0) + differences.entries_unvectorized as entries_unvectorized
                    from differences left join flywheel.daily_knowledge as kept using (day)
                    union all
                    select day, entries_created, entries_unvectorized from recounted
                ), emptied as (
                    delete from flywheel.daily_knowledge
                    where day in (select day from final where entries_created = 0)
                       or (day in (select day from recount_days) and day not in (select day from recounted))
                    returning 1
                ), written as (
                    insert into flywheel.daily_knowledge (day, day_start, entries_created, entries_unvectorized, refreshed_at)
                    select day, day::timestamp at time zone $1, entries_created, entries_unvectorized, $3
                    from final where entries_created <> 0
                    on conflict (day) do update set
                        entries_created = excluded.entries_created, entries_unvectorized = excluded.entries_unvectorized,
                        refreshed_at = excluded.refreshed_at
                    returning 1
                ), watermark as (
                    select case when greatest($5, max(created_at)) > $6 then $6 else greatest($5, max(created_at)) end as value
                    from changed
                ), untracked as (
                    delete from flywheel.tracked_knowledge as tracked
                    where tracked.id in (select key from gone)
                       or tracked.id in (select key from seen
                                         where not unvectorized and not created_at > (select value from watermark) - $4)
                       or (tracked.created_at > $2 and tracked.created_at <= (select value from watermark) - $4
                           and not tracked.unvectorized and not exists (select from seen where seen.key = tracked.id))
                ), tracked as (
                    insert into flywheel.tracked_knowledge (id, day, unvectorized, created_at)
                    select key, day, unvectorized, created_at from seen
                    where (unvectorized or created_at > (select value from watermark) - $4)
                      and not exists (select from counted where counted.id = seen.key
                                        and (counted.day, counted.unvectorized, counted.created_at)
                                            is not distinct from (seen.day, seen.unvectorized, seen.created_at))
                    on conflict (id) do update set
                        day = excluded.day, unvectorized = excluded.unvectorized, created_at = excluded.created_at
                )
                select (select value from watermark), (select count(*) from seen) + (select count(*) from gone),
                       (select count(*) from recount_days),
                       (select count(*) from written) + (select count(*) from emptied)
            $sql$, knowledge_rows, knowledge_key_type)
            using zone, coalesce(state.knowledge_watermark - lookback, '-infinity'), metrics_now, lookback,
                  state.knowledge_watermark, ceiling
            into knowledge_watermark, rows_read, days_recounted, rows_written;
            execute format($sql$
                select count(*), count(*) filter (where embedding is null) from %s as entries where created_at is null
            $sql$, knowledge_rows)
            into undated_knowledge, undated_unvectorized;
            steps := steps || jsonb_build_object('step', 'daily_knowledge', 'rows', rows_written, 'read', rows_read,
                     'days_recounted', days_recounted,
                     'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
            step_started := clock_timestamp();
        end if;

        -- The rows skipped as unusable, by reason: over every row when full (counted above, when its
        -- passes found any), over the rows read when incremental.
        if mode = 'full' then
            unusable := jsonb_build_object('incidents', incidents_unusable, 'auto_repair_executions', executions_unusable,
                                           'knowledge_entries', knowledge_unusable);
        else
            unusable := jsonb_build_object(
                'incidents', flywheel.unusable_rows(source_schema, 'incidents', incidents_reason, incidents_read),
                'auto_repair_executions', flywheel.unusable_rows(source_schema, 'auto_repair_executions', executions_reason,
                                                                 executions_read),
                'knowledge_entries', flywheel.unusable_rows(source_schema, 'knowledge_entries', knowledge_reason,
                                                            knowledge_read));
        end if;
        unusable := nullif(jsonb_strip_nulls(unusable), '{}');

        -- Active incidents: the stuck and TYPE-4 ones are kept by flywheel.stuck_counts over the
        -- tracked rows, changed by the incidents step's differences and the incidents newly past
        -- stuck_after (counting them each run read the whole active set: 4-5x a normal platform's
        -- routine refresh at M stuck). Without tracking they are counted in the source, and the
        -- newest active incidents are tracked for flywheel.newest_active_incidents alone (the next
        -- run is full and starts the tracked rows afresh).
        if cardinality(lacking) = 0 then
            select counted.incidents_stuck, counted.type4_count into incidents_stuck, type4_count
              from flywheel.stuck_counts(metrics_now - stuck_after, stuck_changed, type4_changed) as counted;
            rows_written := 0;
        else
            execute format($sql$
                select (select count(*) from %1$s as incidents where status = 'investigating' and created_at <= $1),
                       (select count(*) from %1$s as incidents where status = 'investigating' and notification_type = 'TYPE-4')
            $sql$, incidents_rows)
            using metrics_now - stuck_after
            into incidents_stuck, type4_count;
            -- Only what the flow shows; the rest of a tracked row counts nowhere here, and the next
            -- run (full) tracks afresh. updated_at may not even exist.
            execute format($sql$
                insert into flywheel.tracked_incidents
                    (incident_id, status, alertname_missing, execution_success, created_at, alertname)
                select incident_id::text, status, false, false, created_at, alertname
                from %s as incidents
                where status in ('investigating', 'mitigating')
                order by created_at desc nulls last, incident_id::text desc
                limit $1
            $sql$, incidents_rows)
            using flow_limit;
            get diagnostics rows_written = row_count;
        end if;
        steps := steps || jsonb_build_object('step', 'active_incidents', 'rows', rows_written,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        -- The snapshot, from the metric definitions (sql/metrics/), and the current flow.
        perform flywheel.write_snapshot(metrics_now, started,
                                        undated_incidents, undated_alertname_missing, undated_investigating,
                                        undated_mitigating, undated_knowledge, undated_unvectorized,
                                        incidents_stuck, type4_count, recent_executions_from,
                                        incidents_rows, executions_rows, knowledge_rows);

        -- Where the next run starts. Without the column or indexes nothing was tracked: no state, so
        -- the next run is full again (and says why).
        if cardinality(lacking) > 0 then
            delete from flywheel.refresh_state;
        else
            insert into flywheel.refresh_state as kept
                (singleton, timezone, source_schema, incidents_watermark, executions_watermark, knowledge_watermark,
                 lookback, full_at, recent_executions_from)
            values (true, zone, source_schema, incidents_watermark, executions_watermark, knowledge_watermark,
                    lookback, metrics_now, recent_executions_from)
            on conflict (singleton) do update set
                timezone = excluded.timezone, source_schema = excluded.source_schema,
                recent_executions_from = excluded.recent_executions_from,
                incidents_watermark = excluded.incidents_watermark,
                executions_watermark = excluded.executions_watermark,
                knowledge_watermark = excluded.knowledge_watermark,
                full_at = case when mode = 'full' then excluded.full_at else kept.full_at end;
        end if;

        -- History in tiers (issue 13): the snapshot folded into its bucket of every tier, and the
        -- snapshots and each tier pruned after their own retention settings.
        perform flywheel.record_history(metrics_now);
        -- Retention, measured from the metrics' clock so that a back-fill never prunes the present.
        delete from flywheel.refresh_log where started_at < metrics_now - retention;
        delete from flywheel.sync_log where started_at < metrics_now - retention;
        steps := steps || jsonb_build_object('step', 'snapshot', 'rows', 1,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
    -- query_canceled too (OTHERS leaves it out): a statement_timeout is a failure to record like any other.
    exception when others or query_canceled then
        get stacked diagnostics failure_message = message_text, failure_state = returned_sqlstate,
                                failure_detail = pg_exception_detail;
        failure := flywheel.record_refresh_failure(started, metrics_now, coalesce(mode, 'full'), mode_reason, steps,
                                                   failure_message, failure_state, failure_detail);
        raise warning 'flywheel refresh failed: %', failure ->> 'error'
            using hint = 'See flywheel.refresh_log; flywheel-sync check tells whether the source tables are as expected.';
        return failure;
    end;

    insert into flywheel.refresh_log (started_at, finished_at, computed_at, mode, mode_reason, status, steps, drift, unusable)
    values (started, clock_timestamp(), metrics_now, mode, mode_reason, 'ok', steps, drift, unusable)
    returning * into log_row;
    return to_jsonb(log_row);
end
$$;

comment on function flywheel.refresh(timestamptz, boolean) is
    'Computes every flywheel metric into snapshots, the daily rollups and current_flow, in one transaction; one at a time (the row lock of flywheel.refresh_lock); source rows it cannot use are skipped and counted in refresh_log.unusable. Incremental (only rows changed since the last run) unless full => true or a full run is needed (refresh_log.mode_reason says why). Returns the refresh_log row as jsonb. as_of: the metrics'' clock, default now()';
