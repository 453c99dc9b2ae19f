"""The replaceable objects (views, materialized views and functions) of schema flywheel, and which
release of them each migration leaves in place.

Every object is one file, ``sql/<group>/<name>.sql``: its current definition, the *head*. Changing an
object means editing its file and opening a new release; the file is never copied. Each file's first
``-- drop:`` line says how to remove the object, so that a migration can remove one it did not write.

A *release* is the ordered list of objects in force after one migration
(flywheel_sync/database/releases.py). The head release is ``HEAD_RELEASE`` with the objects ``HEAD``
names, in creation order (so dependants come after what they use). A release that has landed is a
``PastRelease``: the commit of this repository where its files were the head, and their paths there. Its
texts are read from git history (``git show``), or, in an installed wheel, from the copy its build
packed (hatch_build.py): the way TimescaleDB builds its downgrade scripts from the previous release's
tag, so the repository holds each definition once.

A migration that changes any object calls :func:`replace`: it drops the previous release's objects (in
reverse order, so dependants go first) and creates its own (in order), which makes the end state of
every upgrade path exactly the files the release names, whatever revision it started from.

An upgrade over several revisions (``flywheel-sync migrate`` from nothing, or from an older revision)
runs inside :func:`one_release_per_upgrade`: the objects of the release it starts from are dropped once,
at the first :func:`replace`, and those of the release it ends at are created once, after every
migration's table changes -- so a fresh install creates the head objects directly and ``migrate --sql``
prints the end state for a DBA to read, not every release in turn. A migration's table or data step
therefore must not need the objects of its own release; a step that does goes through
:func:`after_objects`. Downgrades go release by release: each ``downgrade()`` leaves exactly the
objects of the release below it.

Opening a new release (docs/migrations.md): move the current head into ``PAST_RELEASES`` (the commit
before your change and its files' paths), set ``HEAD_RELEASE``, edit the files, and add the migration
that calls ``replace(old, new)``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from alembic import op
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from .releases import definitions, release_objects

_DROP_LINE = re.compile(r"^--\s*drop:\s*(?P<statement>.+?)\s*$", re.MULTILINE)


def drop_statement(text: str, where: str = "") -> str | None:
    """The text's ``-- drop:`` statement; None for files with nothing to drop (grants)."""
    match = _DROP_LINE.search(text)
    if match is None:
        raise ValueError(f"{where or 'an object file'} has no '-- drop:' line")
    statement = match["statement"]
    return None if statement.lower() in ("none", "nothing") else statement


Executor = Callable[..., None]


def execute(sql: str, run: Executor | None = None) -> None:
    # A file is handed to the server as it is: no bind parameters (':name'), no '%' placeholders.
    (run or op.execute)(_Verbatim(sql), execution_options={"no_parameters": True})


def create(release: str, run: Executor | None = None, heading: str = "") -> None:
    """Create the objects of ``release`` in order; ``heading`` (a comment) opens the first one's text."""
    for index, text in enumerate(definitions(release)):
        execute((heading if index == 0 else "") + text, run)


def drop(release: str) -> None:
    for name, text in reversed(list(zip(release_objects(release), definitions(release)))):
        statement = drop_statement(text, f"{name} of release {release}")
        if statement:
            execute(statement)


@dataclass
class _Upgrade:
    """The releases an upgrade run has passed: whether it dropped its first, and the one it ends at."""

    dropped_first: bool = False
    last: str | None = None
    after_objects: list[str] = field(default_factory=list)


_upgrade: _Upgrade | None = None


def replace(old: str | None, new: str | None) -> None:
    """Move the objects from release ``old`` to release ``new`` (either may be None: nothing).

    Inside :func:`one_release_per_upgrade` only the first release is dropped here, and the last is
    created when the upgrade ends."""
    if _upgrade is None:
        if old is not None:
            drop(old)
        if new is not None:
            create(new)
        return
    if not _upgrade.dropped_first:
        if old is not None:
            drop(old)
        _upgrade.dropped_first = True
    _upgrade.last = new


def after_objects(sql: str) -> None:
    """Run ``sql``, which needs the views and functions of the release being installed, once they
    exist: at once outside :func:`one_release_per_upgrade`, after the end release is created inside it
    (so it may only use what that release still has)."""
    if _upgrade is None:
        execute(sql)
    else:
        _upgrade.after_objects.append(sql)


@contextlib.contextmanager
def one_release_per_upgrade(run: Executor) -> Iterator[None]:
    """Around an upgrade's migrations: create the objects of the release it ends at once, with
    ``run`` (alembic's ``context.execute``, which works online and offline), after them all."""
    global _upgrade
    _upgrade = _Upgrade()
    try:
        yield
        if _upgrade.last is not None:
            create(_upgrade.last, run,
                   heading=f"-- The views and functions of release {_upgrade.last}, each once "
                           "(flywheel_sync/database/objects.py):\n\n")
        for sql in _upgrade.after_objects:
            execute(sql, run)
    finally:
        _upgrade = None


class _Verbatim(Executable, ClauseElement):
    """A SQL string executed and printed exactly as written."""

    inherit_cache = False

    def __init__(self, sql: str) -> None:
        self.sql = sql


@compiles(_Verbatim)
def _compile_verbatim(element: _Verbatim, compiler, **kw) -> str:
    return element.sql
