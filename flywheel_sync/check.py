"""The source contract: what the metrics need of the platform's tables, and a check of a real database
against it (metrics.md, "The platform's data").

The check only reads the catalog and, for the status values, the incidents table; it never creates
or changes anything. It reports in one list:

* error: a missing table or column, or a column of a type the SQL cannot use, or status values that
  are a known status in another spelling (the metrics would silently miss them);
* warning: something that works but is probably not what the platform means;
* suggestion: an index the refresh wants, with the statement to create it without blocking writes
  (on a partitioned table, one statement a line: the index ON ONLY the parent, then one built
  CONCURRENTLY and attached per partition).

The incremental refresh (refresh_v02.sql) needs incidents.updated_at and the indexes marked
``incremental`` below; without any of them every refresh is full, and the check says so.
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
        for table, wanted in CONTRACT.items():
            report.findings.extend(_check_table(table, wanted, columns.get(table)))
        if {"status"} <= set(columns.get("incidents", {})):
            report.findings.extend(_check_statuses(connection, schema))
        report.findings.extend(_check_change_tracking(columns))
        report.findings.extend(_check_indexes(connection, schema, columns))
        return report


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _configured_schema(connection: Connection) -> str:
    if connection.execute(sa.text("select to_regclass('flywheel.settings')")).scalar() is None:
        return "public"
    return connection.execute(sa.text("select flywheel.setting('source_schema') #>> '{}'")).scalar() or "public"


def _columns(connection: Connection, schema: str) -> dict[str, dict[str, str]]:
    rows = connection.execute(sa.text(
        "select table_name, column_name, data_type from information_schema.columns"
        " where table_schema = :schema and table_name = any(:tables)"
    ), {"schema": schema, "tables": list(CONTRACT)})
    found: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        found.setdefault(table, {})[column] = data_type
    return found


def _check_table(table: str, wanted: tuple[Column, ...], present: dict[str, str] | None) -> list[Finding]:
    if present is None:
        return [Finding("error", table, f"table {table} is missing (or not visible to this user)")]
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
