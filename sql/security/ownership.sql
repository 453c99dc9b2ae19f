-- Who the routines that run with their owner's rights run as (release 0005): flywheel_owner.
--
-- flywheel.refresh() reads the platform's tables, and flywheel.count_playbooks() writes
-- flywheel.playbook_totals, for callers who may do neither: they are SECURITY DEFINER. Whoever ran
-- the migration used to own them, so any code of the platform's that runs inside them -- a row-level
-- security policy on a source table, a function in a view put where a source table was -- ran with
-- the migrating admin's rights, a superuser's when a superuser migrated. Now every SECURITY DEFINER
-- routine in schema flywheel belongs to flywheel_owner (migration 0005 creates it): NOLOGIN, no
-- attribute, member of no role, it holds only what the routines need -- SELECT on the source tables
-- (granted below where the migrating role may, else by the DBA: docs/migrations.md) and on
-- schema flywheel's tables, writes on them but settings and the version table, EXECUTE on
-- flywheel's functions. And they run with row_security = off: a policy on a source table makes the
-- refresh fail ("query would be affected by row-level security policy"; `flywheel-sync check` says
-- what to do) instead of running the policy's code.
--
-- The materialized views (current_flow) belong to flywheel_owner too: only their owner may
-- REFRESH them, and the refresh runs as it.
--
-- Written as a loop over the catalog rather than per signature: a routine that becomes SECURITY
-- DEFINER in a later release, or a refresh with another signature, is handed over without an edit
-- here. Ownership can only be given to a role the migrating role may SET ROLE to, which has CREATE
-- on the schema; CREATE is granted for the hand-over only.
--
-- When changing this, also change: flywheel_sync/database/check.py (_check_definer_routines), docs/migrations.md.
--
-- The source tables' grants outlive a downgrade, as the role does; those in schema flywheel do not.
-- drop: revoke all on all tables in schema flywheel from flywheel_owner; revoke all on schema flywheel from flywheel_owner
do $ownership$
declare
    owner_role constant text := 'flywheel_owner';
    -- PostgreSQL 16 separates the right to SET ROLE from membership; 15 has no 'SET' to ask about.
    may_set_role constant text := case when current_setting('server_version_num')::integer >= 160000
                                       then 'SET' else 'MEMBER' end;
    routine regprocedure;
    materialized regclass;
    source regclass;
begin
    -- BYPASSRLS is allowed: a DBA who keeps row-level security on a source table may give it, and
    -- then no policy is applied (nor run) inside the refresh.
    if exists (select from pg_roles where rolname = owner_role
               and (rolsuper or rolcreaterole or rolcreatedb or rolreplication or rolcanlogin)) then
        raise exception 'role flywheel_owner must be a plain NOLOGIN role: it owns the functions that read the platform''s tables'
            using hint = 'ALTER ROLE flywheel_owner NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOLOGIN; then migrate again.';
    end if;
    if not pg_has_role(current_user, owner_role, may_set_role) then
        begin
            execute format('grant %I to %I', owner_role, current_user);
        exception when insufficient_privilege then
            raise exception 'the migrating role % must be a member of flywheel_owner to hand it the flywheel functions', current_user
                using hint = format('A superuser runs: GRANT flywheel_owner TO %I; (docs/migrations.md lists every statement)', current_user);
        end;
    end if;

    grant usage on schema flywheel to flywheel_owner;
    grant select, insert, update, delete, truncate on all tables in schema flywheel to flywheel_owner;
    revoke insert, update, delete, truncate on flywheel.settings, flywheel.alembic_version from flywheel_owner;
    grant execute on all functions in schema flywheel to flywheel_owner;

    grant create on schema flywheel to flywheel_owner;
    for routine in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'flywheel'::regnamespace and p.prosecdef order by p.oid
    loop
        execute format('alter routine %s owner to flywheel_owner', routine);
        execute format('alter routine %s set row_security = off', routine);
    end loop;
    -- REFRESH MATERIALIZED VIEW needs the owner: the refresh runs as flywheel_owner, and a DBA who
    -- migrated (a member of it) may refresh them too (release 0007).
    for materialized in
        select c.oid::regclass from pg_class c
        where c.relnamespace = 'flywheel'::regnamespace and c.relkind = 'm' order by c.oid
    loop
        execute format('alter materialized view %s owner to flywheel_owner', materialized);
    end loop;
    revoke create on schema flywheel from flywheel_owner;

    -- The sources, in the schema the refresh reads: granted where the migrating role may grant
    -- (their owner, a superuser); `flywheel-sync check` names the rest with the GRANT to run.
    for source in
        select c.oid::regclass from pg_class c
        where c.relnamespace = to_regnamespace(quote_ident(flywheel.setting('source_schema') #>> '{}'))
          and c.relname in ('incidents', 'knowledge_entries', 'auto_repair_executions')
          and has_table_privilege(c.oid, 'SELECT WITH GRANT OPTION')
    loop
        execute format('grant select on %s to flywheel_owner', source);
    end loop;
end
$ownership$;
