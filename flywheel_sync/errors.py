"""The errors a user can act on.

Each is a ``click.ClickException``: the CLI prints its one-line message (no traceback) and exits 1.
The library raises them too, so any caller gets the same message.
"""

from __future__ import annotations

import click


class FlywheelError(click.ClickException):
    """Base of every error whose message tells the user what to do."""


class DatabaseUnavailable(FlywheelError):
    """The database URL is missing, or the server cannot be reached with it."""


class AuthenticationFailed(FlywheelError):
    """A server refused the credentials of its URL: retrying cannot help, so nothing retries it.

    Exit status 78 (EX_CONFIG of sysexits.h), so a service manager can tell it from a server that is
    down (docs/sync.md: ``RestartPreventExitStatus=78``).
    """

    exit_code = 78


class NotMigrated(FlywheelError):
    """Schema ``flywheel`` is missing or older than this version of flywheel-sync."""


class ReadOnlyStandby(FlywheelError):
    """The database is a hot standby (a read replica): it cannot be refreshed or migrated."""


class NotRefreshed(FlywheelError):
    """The metrics have never been computed in this database."""


class RefreshBusy(FlywheelError):
    """Another refresh held the lock for longer than this one would wait."""


class RefreshFailed(FlywheelError):
    """The refresh ran but failed; the failure is recorded in ``flywheel.refresh_log``."""


class InvalidSetting(FlywheelError):
    """A setting's key is unknown or its value was refused."""


class SourceContractBroken(FlywheelError):
    """The platform's tables do not hold what the metrics need (see ``flywheel-sync check``)."""


class MigrationPrivilegesMissing(FlywheelError):
    """The migrating role lacks a privilege the migration needs (docs/migrations.md lists them)."""


class MigratedWithWarnings(FlywheelError):
    """`migrate --strict`: the migration went through, but left something that needs a DBA.

    Exit status 3, so a script tells it from a migration that failed (1) or a usage error (2).
    """

    exit_code = 3


class UnknownRevision(FlywheelError):
    """A revision given to migrate or downgrade that no migration has."""


class PastReleaseUnavailable(FlywheelError):
    """A downgrade needs a past release's object files, and neither git history nor the wheel has them."""
