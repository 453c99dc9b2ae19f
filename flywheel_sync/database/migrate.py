"""Migrations: alembic, driven from Python so the CLI and the tests share one path."""

from __future__ import annotations

import io

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from ..errors import MigrationPrivilegesMissing, UnknownRevision
from ..paths import ALEMBIC_INI, MIGRATIONS_DIR
from . import check, db


def alembic_config(output: io.TextIOBase | None = None) -> Config:
    config = Config(str(ALEMBIC_INI), output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _run(engine: Engine, action, *args) -> list[str]:
    """Run an alembic command on one connection; the WARNINGs the server raised meanwhile."""
    config = alembic_config()
    config.attributes["upgrading"] = action is command.upgrade
    warnings: list[str] = []

    def keep_warning(diagnostic) -> None:
        if diagnostic.severity_nonlocalized == "WARNING":
            warnings.append(diagnostic.message_primary)

    with db.connect(engine) as connection:
        db.require_primary(connection)
        connection.connection.driver_connection.add_notice_handler(keep_warning)
        config.attributes["connection"] = connection
        action(config, *args)
    return warnings


def upgrade(engine: Engine, revision: str = "head") -> list[str]:
    """Upgrade schema flywheel to ``revision``; return the warnings a user should read: the server's
    (e.g. a setting out of a new release's bounds), then what is wrong with the result (a routine that
    runs as a superuser, a source flywheel_owner cannot read).

    Refuses before changing anything on a standby, and when the connected role lacks a privilege the
    migration needs (MigrationPrivilegesMissing, with the statements a superuser runs)."""
    with db.connect(engine) as connection:
        db.require_primary(connection)
        if _current(connection) != _resolve(revision):
            _require_privileges(connection)
    warnings = _run(engine, command.upgrade, revision)
    with db.connect(engine) as connection:
        source_schema = connection.execute(sa.text("select flywheel.setting('source_schema') #>> '{}'")).scalar_one()
        findings = check.privilege_findings(connection, source_schema)
    return warnings + [_warning(finding) for finding in findings]


def _warning(finding: check.Finding) -> str:
    fix = f". Run: {finding.statement}" if finding.statement else ""
    return f"{finding.subject}: {finding.message}{fix}"


def _require_privileges(connection: sa.Connection) -> None:
    missing = check.migration_privileges(connection)
    if missing:
        problems = "; ".join(f"{finding.subject}: {finding.message}" for finding in missing)
        statements = " ".join(finding.statement for finding in missing if finding.statement)
        raise MigrationPrivilegesMissing(
            f"cannot migrate: {problems}. A superuser runs: {statements} ({check.MIGRATION_DOC}); then migrate again."
        )


def downgrade(engine: Engine, revision: str) -> None:
    _resolve(revision)
    _run(engine, command.downgrade, revision)


def upgrade_sql(revision: str = "head", start: str | None = None) -> str:
    """The SQL an upgrade would run (alembic's offline mode), for a DBA to review: from nothing, the
    end state (every object once); from ``start``, only the upgrade from it."""
    for named in (revision, start):
        if named is not None:
            _resolve(named)
    output = io.StringIO()
    config = alembic_config(output=output)
    config.attributes["upgrading"] = True
    command.upgrade(config, f"{start}:{revision}" if start else revision, sql=True)
    return output.getvalue()


def current_revision(engine: Engine) -> str | None:
    with db.connect(engine) as connection:
        return _current(connection)


def _current(connection: sa.Connection) -> str | None:
    exists = connection.execute(sa.text("select to_regclass('flywheel.alembic_version') is not null")).scalar_one()
    if not exists:
        return None
    return connection.execute(sa.text("select version_num from flywheel.alembic_version")).scalar_one_or_none()


def _resolve(revision: str) -> str | None:
    """The revision id ``revision`` names (None for base); UnknownRevision, listing them, for none."""
    if revision == "base":
        return None
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision).revision
    except CommandError as exc:
        raise UnknownRevision(
            f"no revision {revision!r}: the revisions are {', '.join(revisions())}, or head (the newest) and base (nothing)"
        ) from exc


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]
