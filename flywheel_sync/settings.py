"""Reading and changing flywheel.settings. The database validates (a trigger): this module only
turns what the user typed into JSON and the trigger's refusal into a one-line error."""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import db
from .errors import InvalidSetting


@dataclass(frozen=True)
class Setting:
    key: str
    value: object
    description: str


def list_settings(engine: Engine) -> list[Setting]:
    with db.connect(engine) as connection:
        db.require_schema(connection)
        rows = connection.execute(sa.text("select key, value, description from flywheel.settings order by key"))
        return [Setting(row.key, row.value, row.description) for row in rows]


def parse_value(text: str) -> object:
    """What the user typed, as JSON: numbers and arrays as such, anything else as a string.

    So `settings set min_sample 10` stores 10, `settings set timezone Asia/Taipei` stores
    "Asia/Taipei" and `settings set stuck_after '24 hours'` stores "24 hours".
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def set_setting(engine: Engine, key: str, text: str) -> Setting:
    value = parse_value(text)
    try:
        with db.connect(engine) as connection:
            db.require_schema(connection)
            row = connection.execute(
                sa.text("update flywheel.settings set value = cast(:value as jsonb) where key = :key"
                        " returning key, value, description"),
                {"key": key, "value": json.dumps(value)},
            ).one_or_none()
            if row is None:
                known = connection.execute(sa.text("select string_agg(key, ', ' order by key) from flywheel.settings"))
                raise InvalidSetting(f"unknown setting {key!r}; the settings are: {known.scalar_one()}")
            return Setting(row.key, row.value, row.description)
    except sa.exc.IntegrityError as exc:
        if isinstance(exc.orig, psycopg.errors.CheckViolation):
            raise InvalidSetting(f"{exc.orig.diag.message_primary}; the setting was not changed") from exc
        raise


def display(value: object) -> str:
    """A value as the user would type it back: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
