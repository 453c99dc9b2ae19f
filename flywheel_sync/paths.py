"""Where the SQL files, the migrations and alembic.ini are: beside the package in a checkout, inside
it (``_data``) in a wheel, which also packs the past releases' object files that a checkout reads from
its git history (flywheel_sync/database/objects.py)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE / "_data" if (_PACKAGE / "_data").is_dir() else _PACKAGE.parent

REPOSITORY_ROOT = _PACKAGE.parent
PACKED_RELEASES_DIR = _ROOT / "past_releases"
SQL_DIR = _ROOT / "sql"
MIGRATIONS_DIR = _ROOT / "migrations"
ALEMBIC_INI = _ROOT / "alembic.ini"
REFERENCE_SCHEMA = SQL_DIR / "reference" / "platform_schema.sql"
REFERENCE_SCHEMA_PARTITIONED = SQL_DIR / "reference" / "platform_schema_partitioned.sql"
