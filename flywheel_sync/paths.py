"""Where the SQL files, the migrations and alembic.ini are: beside the package in a checkout, inside
it (``_data``) in a wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE / "_data" if (_PACKAGE / "_data").is_dir() else _PACKAGE.parent

SQL_DIR = _ROOT / "sql"
MIGRATIONS_DIR = _ROOT / "migrations"
ALEMBIC_INI = _ROOT / "alembic.ini"
REFERENCE_SCHEMA = SQL_DIR / "reference" / "platform_schema.sql"
REFERENCE_SCHEMA_PARTITIONED = SQL_DIR / "reference" / "platform_schema_partitioned.sql"
