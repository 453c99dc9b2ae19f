"""The source contract: what the metrics need of the platform's tables, and a check of a real database
against it (metrics.md, "The platform's data").

The check only reads the catalog and the source tables (the incidents' status values, and every row
against the refresh's rule for rows it cannot use); it never creates or changes anything. It reports
in one list:

* error: a missing table or column, or a column of a type the SQL cannot use, or status values that
  are a known status in another spelling (the metrics would silently miss them);
* warning: something that works but is probably not what the platform means, and the rows the
  refresh skips (a NULL, duplicated or over-long key, a created_at no day can be computed for);
* suggestion: an index the refresh wants, with the statement to create it without blocking writes
  (on a partitioned table, one statement a line: the index ON ONLY the parent, then one built
  CONCURRENTLY and attached per partition).

The incremental refresh (sql/refresh/refresh_mode.sql) needs incidents.updated_at and the indexes marked
``incremental`` below; without any of them every refresh is full, and the check says so.

Privileges (release 0005, docs/migrations.md): the SECURITY DEFINER routines must belong to
flywheel_owner and run without row security; flywheel_owner must be able to read the sources, which
must carry no row-level security and be tables, not views; and, while a migration is due, the
connected role must hold what ``flywheel-sync migrate`` needs (which migrate itself checks first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import db

KNOWN_STATUSES = ("investigating", "mitigating", "resolved", "closed")
TEXT = ("text", "character varying", "character")
TIMESTAMPTZ = ("timestamp with time zone",)
ANY = ()


@dataclass(frozen=True)
class Column:
    name: str
    types: tuple[str, ...]
    used_for: str


@dataclass(frozen=True)
class WantedIndex:
    table: str
    name: str
    definition: str
    leading_column: str
    why: str
    predicate: str | None = None  # as pg_get_expr prints it, for a partial index
    incremental: bool = False  # without it every refresh is full


CONTRACT: dict[str, tuple[Column, ...]] = {
    "incidents": (
        Column("incident_id", ANY, "current_flow"),
        Column("alertname", TEXT, "alertname_null_rate, current_flow"),
        Column("status", TEXT, "incidents_stuck, type4_count, current_flow, daily status counts"),
        Column("notification_type", TEXT, "type4_count"),
        Column("outcome", ("jsonb", "json"), "execution_success_today"),
        Column("created_at", TIMESTAMPTZ, "every incident window and the daily rollup"),
    ),
    "knowledge_entries": (
        Column("id", ANY, "the table's key"),
        Column("embedding", ANY, "km_unvectorized_count, km_vectorized_rate"),
        Column("created_at", TIMESTAMPTZ, "flywheel_conversions_today and the daily rollup"),
    ),
    "auto_repair_executions": (
        Column("id", ANY, "the table's key"),
        Column("success", ("boolean",), "execution_success_rate"),
        Column("created_at", TIMESTAMPTZ, "execution_success_rate's windows and the daily rollup"),
    ),
}

WANTED_INDEXES = (
    WantedIndex("incidents", "incidents_created_at", "(created_at)", "created_at",
                "count_1h reads only its hour and a recounted day only that day", incremental=True),
    WantedIndex("incidents", "incidents_updated_at", "(updated_at)", "updated_at",
                "the routine refresh finds the incidents changed since the last one", incremental=True),
    WantedIndex("incidents", "incidents_active", "(status, created_at) WHERE status IN ('investigating', 'mitigating')",
                "status", "incidents_stuck, type4_count and current_flow read only the active incidents"),
    WantedIndex("auto_repair_executions", "auto_repair_executions_created_at", "(created_at)", "created_at",
                "the routine refresh finds new executions and the rate's windows read only their first day",
                incremental=True),
    WantedIndex("knowledge_entries", "knowledge_entries_created_at", "(created_at)", "created_at",
                "the routine refresh finds new knowledge entries", incremental=True),
    WantedIndex("knowledge_entries", "knowledge_entries_unvectorized", "(created_at, id) WHERE embedding IS NULL",
                "created_at", "the routine refresh reads only the unvectorized backlog",
                predicate="(embedding IS NULL)", incremental=True),
)
FULL_EVERY_TIME = ("every refresh is full (all history read each minute, slower as history grows) "
                   "and says so in flywheel.refresh_log.mode_reason")



@dataclass(frozen=True)
class Finding:
    level: str  # error, warning, suggestion
    subject: str
    message: str
    statement: str | None = None


@dataclass
class Report:
    source_schema: str
    database: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(finding.level == "error" for finding in self.findings)

    def count(self, level: str) -> int:
        return sum(finding.level == level for finding in self.findings)

    def as_dict(self) -> dict:
        return {"source_schema": self.source_schema, "database": self.database, "ok": self.ok,
                "findings": [asdict(finding) for finding in self.findings]}


def check(engine: Engine, source_schema: str | None = None) -> Report:
    with db.connect(engine) as connection:
        schema = source_schema or _configured_schema(connection)
        report = Report(schema, db.mask(engine.url))
        if connection.execute(sa.text("select to_regnamespace(:s)"), {"s": _quote(connection, schema)}).scalar() is None:
            report.findings.append(Finding("error", schema, f"schema {schema} does not exist; pass --source-schema "
                                                            "or set the source_schema setting"))
            return report
        columns = _columns(connection, schema)
        unreadable = _unreadable_tables(connection, schema)
        for table, wanted in CONTRACT.items():
            report.findings.extend(_check_table(table, wanted, columns.get(table)))
        report.findings.extend(_unreadable_findings(connection, schema, unreadable))
        if {"status"} <= set(columns.get("incidents", {})) and "incidents" not in unreadable:
            report.findings.extend(_check_statuses(connection, schema))
        report.findings.extend(_check_change_tracking(columns))
        report.findings.extend(_check_indexes(connection, schema, columns))
        report.findings.extend(privilege_findings(connection, schema))
        if _migration_due(connection):
            report.findings.extend(migration_privileges(connection))
        if not unreadable:
            report.findings.extend(_check_unusable_rows(connection, schema, columns))
        report.findings.extend(_check_unique_keys(connection, schema, columns))
        return report


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _configured_schema(connection: Connection) -> str:
    if connection.execute(sa.text("select to_regclass('flywheel.settings')")).scalar() is None:
        return "public"
    return connection.execute(sa.text("select flywheel.setting('source_schema') #>> '{}'")).scalar() or "public"


def _columns(connection: Connection, schema: str) -> dict[str, dict[str, str]]:
    """The contract tables' columns and their types (a domain's base type), as information_schema
    names them; from pg_catalog, which shows the tables this role may not read as well."""
    rows = connection.execute(sa.text(
        "select c.relname, a.attname,"
        "       format_type(coalesce(nullif(t.typbasetype, 0), a.atttypid), null)"
        " from pg_class c join pg_attribute a on a.attrelid = c.oid join pg_type t on t.oid = a.atttypid"
        " where c.relnamespace = to_regnamespace(:schema) and c.relname = any(:tables)"
        " and c.relkind in ('r', 'p', 'v', 'm', 'f') and a.attnum > 0 and not a.attisdropped"
    ), {"schema": _quote(connection, schema), "tables": list(CONTRACT)})
    found: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        found.setdefault(table, {})[column] = data_type
    return found


def _unreadable_tables(connection: Connection, schema: str) -> list[str]:
    """The contract tables present that the connected role may not SELECT from, in contract order."""
    present = set(connection.execute(sa.text(
        "select relname from pg_class where relnamespace = to_regnamespace(:schema) and relname = any(:tables)"
        " and not has_table_privilege(oid, 'SELECT')"
    ), {"schema": _quote(connection, schema), "tables": list(CONTRACT)}).scalars())
    return [table for table in CONTRACT if table in present]


def _unreadable_findings(connection: Connection, schema: str, tables: list[str]) -> list[Finding]:
    """The check reads the status values and the unusable rows itself: a table it may not read is
    said so, with the GRANT, rather than taken for missing (the refresh reads as flywheel_owner,
    checked below)."""
    me = connection.execute(sa.text("select current_user")).scalar_one()
    return [Finding("warning", table, f"not readable by {me}: its status values and unusable rows go unchecked; "
                    "grant it, or run the check as the role that migrates",
                    f"GRANT SELECT ON {_quote(connection, schema)}.{_quote(connection, table)} TO "
                    f"{_quote(connection, me)};")
            for table in tables]


def _check_table(table: str, wanted: tuple[Column, ...], present: dict[str, str] | None) -> list[Finding]:
    if present is None:
        return [Finding("error", table, f"table {table} is missing")]
    findings = []
    for column in wanted:
        subject = f"{table}.{column.name}"
        actual = present.get(column.name)
        if actual is None:
            findings.append(Finding("error", subject, f"column is missing; it feeds {column.used_for}"))
        elif column.types and actual not in column.types:
            if column.types == TIMESTAMPTZ and actual == "timestamp without time zone":
                findings.append(Finding("warning", subject,
                                        "is timestamp without time zone: read as the server's TimeZone, so "
                                        "'today' and the windows shift if that is not UTC-consistent"))
            else:
                findings.append(Finding("error", subject,
                                        f"has type {actual}; expected {' or '.join(column.types)} ({column.used_for})"))
    return findings


def _check_statuses(connection: Connection, schema: str) -> list[Finding]:
    rows = connection.execute(sa.text(
        f"select status, count(*) from {_quote(connection, schema)}.incidents"
        " where status is null or status <> all(:known) group by status order by count(*) desc"
    ), {"known": list(KNOWN_STATUSES)})
    findings = []
    for status, count in rows:
        if status is None:
            findings.append(Finding("warning", "incidents.status",
                                    f"NULL in {count:,} rows: they count as no status (status_other)"))
        elif status.strip().lower() in KNOWN_STATUSES:
            findings.append(Finding("error", "incidents.status",
                                    f"{status!r} in {count:,} rows is not a status the metrics know; statuses are "
                                    f"compared exactly, lowercase: {status.strip().lower()!r}"))
        else:
            findings.append(Finding("warning", "incidents.status",
                                    f"{status!r} in {count:,} rows is not one of {', '.join(KNOWN_STATUSES)}: "
                                    "those incidents count as neither active nor stuck"))
    return findings


def _check_change_tracking(columns: dict[str, dict[str, str]]) -> list[Finding]:
    """What the incremental refresh cannot see, given the columns the platform has."""
    if "incidents" not in columns or "updated_at" in columns["incidents"]:
        return []
    return [Finding("warning", "incidents.updated_at",
                    f"is missing: the refresh cannot tell which incidents changed, so {FULL_EVERY_TIME}")]


def _check_indexes(connection: Connection, schema: str, columns: dict[str, dict[str, str]]) -> list[Finding]:
    present = connection.execute(sa.text(
        "select t.relname, a.attname, pg_get_expr(i.indpred, i.indrelid) from pg_index i"
        " join pg_class t on t.oid = i.indrelid"
        " join pg_namespace n on n.oid = t.relnamespace"
        " join pg_attribute a on a.attrelid = t.oid and a.attnum = i.indkey[0]"
        " where n.nspname = :schema and i.indisvalid"
    ), {"schema": schema}).all()
    partitions = _leaf_partitions(connection, schema)
    findings = []
    for wanted in WANTED_INDEXES:
        if wanted.leading_column not in columns.get(wanted.table, {}) or any(
            table == wanted.table and _serves(wanted, column, predicate) for table, column, predicate in present
        ) or _on_every_partition(connection, wanted, partitions.get(wanted.table)):
            continue
        if wanted.table in partitions:
            statement = _partitioned_recipe(connection, schema, wanted, partitions[wanted.table])
        else:
            statement = (f"CREATE INDEX CONCURRENTLY {wanted.name} ON "
                         f"{_quote(connection, schema)}.{wanted.table} {wanted.definition};")
        what = (f"no index on {wanted.definition}" if wanted.predicate
                else f"no index starts with {wanted.leading_column}")
        lost = f"; without it {FULL_EVERY_TIME}" if wanted.incremental else ""
        findings.append(Finding("suggestion", f"{wanted.table} {wanted.definition}",
                                f"{what}: it is how {wanted.why}{lost}", statement))
    return findings


OWNER_ROLE = "flywheel_owner"
READER_ROLE = "flywheel_reader"
ROLES = (READER_ROLE, "flywheel_refresher", OWNER_ROLE)
MIGRATION_DOC = 'docs/migrations.md, "What the migrating role needs"'


def privilege_findings(connection: Connection, schema: str) -> list[Finding]:
    """What would let the platform's code run with flywheel_owner's rights, or stop the refresh
    reading the sources: the routines' owner, and the sources' row security, kind and grants."""
    return [*_check_definer_routines(connection), *_check_source_security(connection, schema)]


def _check_definer_routines(connection: Connection) -> list[Finding]:
    rows = connection.execute(sa.text(
        "select p.oid::regprocedure::text, r.rolname, r.rolsuper,"
        "       coalesce('row_security=off' = any(p.proconfig), false)"
        " from pg_proc p join pg_roles r on r.oid = p.proowner"
        " where p.pronamespace = to_regnamespace('flywheel') and p.prosecdef order by 1"
    )).all()
    findings = []
    for routine, owner, superuser, without_row_security in rows:
        if superuser:
            findings.append(Finding("error", routine, f"runs as superuser {owner}, so any code of the platform's it "
                                    "reaches (a policy, a view's function) runs as superuser; `flywheel-sync migrate` "
                                    f"to the head revision hands it to {OWNER_ROLE}"))
        elif owner != OWNER_ROLE:
            findings.append(Finding("error", routine, f"runs as {owner} instead of {OWNER_ROLE}, with all of {owner}'s "
                                    "rights; `flywheel-sync migrate` to the head revision hands it over"))
        if not without_row_security:
            findings.append(Finding("error", routine, "runs with row security, so a policy on a source table would "
                                    "run its code with the routine owner's rights",
                                    f"ALTER ROUTINE {routine} SET row_security = off;"))
    return findings


def _check_source_security(connection: Connection, schema: str) -> list[Finding]:
    rows = connection.execute(sa.text(
        "select c.relname, c.relkind, c.relrowsecurity, o.rolname, o.rolsuper,"
        "       fo.oid is not null and pg_has_role(c.relowner, fo.oid, 'USAGE'),"
        "       fo.oid is null or has_table_privilege(fo.oid, c.oid, 'SELECT'),"
        "       fo.oid is null or fo.rolbypassrls or pg_has_role(fo.oid, c.relowner, 'USAGE')"
        " from pg_class c join pg_roles o on o.oid = c.relowner"
        " left join pg_roles fo on fo.rolname = :owner_role"
        " where c.relnamespace = to_regnamespace(:schema) and c.relname = any(:tables) order by c.relname"
    ), {"schema": _quote(connection, schema), "tables": list(CONTRACT), "owner_role": OWNER_ROLE}).all()
    if not rows:
        return []
    quoted_schema = _quote(connection, schema)
    findings = []
    schema_usage, public_creates = connection.execute(sa.text(
        "select not exists (select from pg_roles where rolname = :owner_role)"
        "       or has_schema_privilege(:owner_role, n.oid, 'USAGE'),"
        "       exists (select from aclexplode(n.nspacl) a where a.grantee = 0 and a.privilege_type = 'CREATE')"
        " from pg_namespace n where n.oid = to_regnamespace(:schema)"
    ), {"schema": quoted_schema, "owner_role": OWNER_ROLE}).one()
    if not schema_usage:
        findings.append(Finding("error", schema, f"{OWNER_ROLE} may not use schema {schema}: every refresh fails "
                                "with permission denied", f"GRANT USAGE ON SCHEMA {quoted_schema} TO {OWNER_ROLE};"))
    if public_creates:
        findings.append(Finding("warning", schema, "every role may create objects here, so anyone could put a view "
                                "in place of a missing source table and have its functions run inside the refresh",
                                f"REVOKE CREATE ON SCHEMA {quoted_schema} FROM PUBLIC;"))
    # The role that migrates flywheel (owns its schema; before it exists, the one checking) controls
    # schema flywheel anyway: its owning the sources as well is no way in for the platform.
    flywheel_admin = connection.execute(sa.text(
        "select coalesce((select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'flywheel'), current_user)"
    )).scalar_one()
    for table, kind, row_security, owner, owner_is_superuser, owner_acts_as_flywheel, readable, unrestricted in rows:
        qualified = f"{quoted_schema}.{_quote(connection, table)}"
        if kind == "v":
            findings.append(Finding("warning", table, f"is a view, not a table: any function it calls runs inside "
                                    f"the refresh with the rights of {OWNER_ROLE} (which writes schema flywheel); "
                                    "point source_schema at the tables"))
        if row_security and not unrestricted:
            findings.append(Finding("error", table, "has row-level security enabled: the refresh runs with "
                                    "row_security = off, so that no policy's code runs with its rights, and fails on "
                                    f"it; disable it, or give {OWNER_ROLE} BYPASSRLS to read every row",
                                    f"ALTER TABLE {qualified} DISABLE ROW LEVEL SECURITY;"))
        if not readable:
            findings.append(Finding("error", table, f"{OWNER_ROLE} may not read it: every refresh fails with "
                                    "permission denied; its owner (or a superuser) grants it",
                                    f"GRANT SELECT ON {qualified} TO {OWNER_ROLE};"))
        if owner_acts_as_flywheel and not owner_is_superuser and owner != flywheel_admin:
            findings.append(Finding("warning", table, f"is owned by {owner}, which has the rights of {OWNER_ROLE}: "
                                    "the platform's table owner can change schema flywheel's results directly"))
    return findings


def _migration_due(connection: Connection) -> bool:
    from .migrate import head_revision  # here: flywheel_sync.database.migrate imports this module

    version_table = connection.execute(sa.text("select to_regclass('flywheel.alembic_version')")).scalar()
    if version_table is None:
        return True
    # Only the migrating role (schema flywheel's owner) reads it; the flywheel logins are not granted it.
    if not connection.execute(sa.text("select has_table_privilege('flywheel.alembic_version', 'SELECT')")).scalar():
        return False
    current = connection.execute(sa.text("select version_num from flywheel.alembic_version")).scalar()
    return current != head_revision()


def migration_privileges(connection: Connection) -> list[Finding]:
    """What the connected role lacks to run `flywheel-sync migrate` (docs/migrations.md): each an
    error whose statement a superuser runs. Empty for a superuser."""
    me, superuser, createrole, may_create_schema, schema_owner, version = connection.execute(sa.text(
        "select r.rolname, r.rolsuper, r.rolcreaterole, has_database_privilege(current_database(), 'CREATE'),"
        "       (select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'flywheel'),"
        "       current_setting('server_version_num')::integer"
        " from pg_roles r where r.rolname = current_user"
    )).one()
    if superuser:
        return []
    # Before PostgreSQL 16, CREATEROLE may grant any role that is not a superuser.
    createrole_grants_any = createrole and version < 160000
    set_role = "SET" if version >= 160000 else "MEMBER"
    me_quoted = _quote(connection, me)
    database = connection.execute(sa.text("select current_database()")).scalar_one()
    findings = []
    if schema_owner is None and not may_create_schema:
        findings.append(Finding("error", "database", f"{me} may not create schema flywheel in database {database}",
                                f"GRANT CREATE ON DATABASE {_quote(connection, database)} TO {me_quoted};"))
    elif schema_owner is not None and not connection.execute(
            sa.text("select pg_has_role(:owner, 'USAGE')"), {"owner": schema_owner}).scalar_one():
        findings.append(Finding("error", "schema flywheel", f"is owned by {schema_owner}: migrate as {schema_owner} "
                                "or as a role granted it"))
    present = {name: (admin, may_set) for name, admin, may_set in connection.execute(sa.text(
        "select rolname, pg_has_role(oid, 'MEMBER WITH ADMIN OPTION'), pg_has_role(oid, :set_role)"
        " from pg_roles where rolname = any(:roles)"), {"roles": list(ROLES), "set_role": set_role})}
    for role in ROLES:
        needs = {READER_ROLE: f"{me} must be able to grant {READER_ROLE} (to flywheel_refresher)",
                 OWNER_ROLE: f"{me} must be able to SET ROLE {OWNER_ROLE} to hand it the functions"}.get(role)
        grant = (f"GRANT {role} TO {me_quoted} WITH ADMIN OPTION;" if role != OWNER_ROLE
                 else f"GRANT {role} TO {me_quoted};")
        if role not in present:
            if not createrole:
                findings.append(Finding("error", role, f"role {role} does not exist and {me} lacks CREATEROLE to "
                                        "create it", f"CREATE ROLE {role} NOLOGIN; {grant}"))
            continue
        admin, may_set = present[role]
        able = {READER_ROLE: admin or createrole_grants_any,
                OWNER_ROLE: may_set or admin or createrole_grants_any}.get(role, True)
        if not able:
            findings.append(Finding("error", role, needs, grant))
    return findings


def _serves(wanted: WantedIndex, leading_column: str, predicate: str | None) -> bool:
    return leading_column == wanted.leading_column and (wanted.predicate is None or predicate == wanted.predicate)


# Partitioned source tables (pg_partman's layout) ----------------------------------------------------
# An index serves a partitioned table when the parent has a valid one (every partition's attached)
# or when every leaf partition has one of its own. CREATE INDEX CONCURRENTLY cannot run on a
# partitioned table, so the advice is PostgreSQL's non-blocking recipe (CREATE INDEX, "Notes"): an
# invalid index ON ONLY the parent, one built CONCURRENTLY per partition, each attached, after which
# the parent's index is valid by itself and new partitions get it when they are created.

def _leaf_partitions(connection: Connection, schema: str) -> dict[str, list[tuple[int, str, str]]]:
    """Each partitioned contract table's leaf partitions, as (oid, schema, name), in name order.

    A sub-partitioned table's leaves are listed too, which is right for "on every partition"; the
    recipe attaches each to the top parent's index, which holds for pg_partman's one-level layout only.
    """
    rows = connection.execute(sa.text(
        "select parent.relname, leaf.relid::oid, n2.nspname, c.relname"
        " from pg_class parent join pg_namespace n on n.oid = parent.relnamespace"
        " cross join lateral pg_partition_tree(parent.oid) as leaf"
        " join pg_class c on c.oid = leaf.relid join pg_namespace n2 on n2.oid = c.relnamespace"
        " where n.nspname = :schema and parent.relkind = 'p' and parent.relname = any(:tables) and leaf.isleaf"
        " order by parent.relname, c.relname"
    ), {"schema": schema, "tables": list(CONTRACT)})
    partitions: dict[str, list[tuple[int, str, str]]] = {}
    for table, *leaf in rows:
        partitions.setdefault(table, []).append(tuple(leaf))
    return partitions


def _on_every_partition(connection: Connection, wanted: WantedIndex,
                        leaves: list[tuple[int, str, str]] | None) -> bool:
    if not leaves:
        return False
    return not _leaves_without(connection, wanted, leaves)


def _leaves_without(connection: Connection, wanted: WantedIndex,
                    leaves: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The leaf partitions that have no valid index serving ``wanted``."""
    indexed = connection.execute(sa.text(
        "select i.indrelid, a.attname, pg_get_expr(i.indpred, i.indrelid) from pg_index i"
        " join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]"
        " where i.indrelid = any(:leaves) and i.indisvalid"
    ), {"leaves": [leaf[0] for leaf in leaves]}).all()
    served = {oid for oid, column, predicate in indexed if _serves(wanted, column, predicate)}
    return [leaf for leaf in leaves if leaf[0] not in served]


def _partitioned_recipe(connection: Connection, schema: str, wanted: WantedIndex,
                        leaves: list[tuple[int, str, str]]) -> str:
    """The statements, one a line, each to run by itself (not in a transaction block): the parent's
    index ON ONLY, then for each partition without one an index built CONCURRENTLY and attached."""
    quote = connection.dialect.identifier_preparer.quote
    parent_index = f"{quote(schema)}.{quote(wanted.name)}"
    suffix = wanted.name.removeprefix(f"{wanted.table}_")
    lines = [f"CREATE INDEX IF NOT EXISTS {quote(wanted.name)} ON ONLY {quote(schema)}.{wanted.table} "
             f"{wanted.definition};"]
    for _, partition_schema, partition in _leaves_without(connection, wanted, leaves):
        index = quote(f"{partition}_{suffix}")
        lines.append(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} "
                     f"ON {quote(partition_schema)}.{quote(partition)} {wanted.definition};")
        lines.append(f"ALTER INDEX {parent_index} ATTACH PARTITION {quote(partition_schema)}.{index};")
    return "\n".join(lines)


LABELS = {"error": "ERROR", "warning": "WARNING", "suggestion": "SUGGEST"}


def render(report: Report) -> str:
    lines = [f"Source contract of schema {report.source_schema} in {report.database}"]
    for finding in report.findings:
        lines.append(f"  {LABELS[finding.level]:<8} {finding.subject}: {finding.message}")
        if finding.statement:
            first, *more = finding.statement.splitlines()
            lines.append(f"           run: {first}")
            lines.extend(f"                {line}" for line in more)
    verdict = "Contract holds" if report.ok else "Contract BROKEN"
    lines.append(f"{verdict}: {report.count('error')} errors, {report.count('warning')} warnings, "
                 f"{report.count('suggestion')} suggestions.")
    return "\n".join(lines)


# Why flywheel.refresh() skips a row (flywheel.unusable_row_reason_sql, which holds the rule).
UNUSABLE_REASONS = {
    "id_missing": "{key} is NULL",
    "id_too_long": "{key} is longer than 1000 bytes",
    "id_duplicated": "another row has the same {key}",
    "notification_type_too_long": "notification_type is longer than 1000 bytes",
    "created_at_out_of_range": "created_at is before 1900 or from the year 10000 on (infinity included)",
}
READ_BY_THE_RULE = {"incidents": ("incident_id", "notification_type", "created_at"),
                    "auto_repair_executions": ("id", "created_at"), "knowledge_entries": ("id", "created_at")}


def _check_unusable_rows(connection: Connection, schema: str, columns: dict[str, dict[str, str]]) -> list[Finding]:
    """The source rows the refresh skips, counted per table and reason by flywheel.unusable_source_rows():
    the metrics go on without them, so they are warnings. Needs schema flywheel (release 0004) and the
    columns the rule reads; a missing column is already an error above."""
    installed = connection.execute(sa.text("select to_regprocedure('flywheel.unusable_source_rows(text)') is not null"))
    if not installed.scalar_one() or any(
        table in columns and not set(needed) <= set(columns[table]) for table, needed in READ_BY_THE_RULE.items()
    ):
        return []
    rows = connection.execute(sa.text("select * from flywheel.unusable_source_rows(:schema)"), {"schema": schema})
    return [Finding("warning", f"{table} rows",
                    f"{count:,} skipped by the refresh ({reason}): "
                    + UNUSABLE_REASONS[reason].format(key=READ_BY_THE_RULE[table][0]))
            for table, reason, count in rows]


def _check_unique_keys(connection: Connection, schema: str, columns: dict[str, dict[str, str]]) -> list[Finding]:
    """A key without a unique index: the refresh then looks for duplicates (flywheel.unusable_row_reason_sql)
    over every key in a full run and over the keys it reads in a routine one, so the index is suggested.
    Not on a partitioned table, where a unique index must hold the partition key too (the routine run
    then finds the keys it reads through the primary key, which leads with the key)."""
    unique = set(connection.execute(sa.text(
        "select t.relname, a.attname from pg_index i"
        " join pg_class t on t.oid = i.indrelid join pg_namespace n on n.oid = t.relnamespace"
        " join pg_attribute a on a.attrelid = t.oid and a.attnum = i.indkey[0]"
        " where n.nspname = :schema and i.indisunique and i.indisvalid and i.indnkeyatts = 1"
        " and i.indpred is null and i.indexprs is null"
    ), {"schema": schema}).all())
    partitioned = set(connection.execute(sa.text(
        "select relname from pg_class where relnamespace = to_regnamespace(:schema) and relkind = 'p'"
    ), {"schema": _quote(connection, schema)}).scalars())
    findings = []
    for table, (key, *_) in READ_BY_THE_RULE.items():
        if table in partitioned:
            continue
        if key in columns.get(table, {}) and (table, key) not in unique:
            findings.append(Finding(
                "suggestion", f"{table} ({key})",
                f"no unique index on {key}: every full refresh reads every {key} to find the duplicates it skips",
                f"CREATE UNIQUE INDEX CONCURRENTLY {table}_{key}_unique ON {_quote(connection, schema)}.{table} ({key});"))
    return findings

