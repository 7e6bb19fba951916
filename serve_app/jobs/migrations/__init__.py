"""Schema migrations: Alembic, driven programmatically (no alembic.ini at run time).

``upgrade(engine_or_url)`` brings the database to this code's head revision. It is run by
``JobStore`` at start-up and is safe when many replicas start at once: the whole upgrade runs
in one transaction under a lock (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE``
on SQLite -- both have transactional DDL), so one process migrates and the others then see
the head revision. The revision is kept in its own table, ``songsmith_jobs_version``, so the
database may be shared with other Alembic-managed apps.

Adding a revision (dev machine)::

    .venv/bin/python -m serve_app.jobs.migrations revision -m "add foo"   # then edit it
    .venv/bin/python -m serve_app.jobs.migrations heads

Revisions must work on both SQLite and PostgreSQL: use ``op.batch_alter_table`` for ALTERs
(env.py enables batch mode on SQLite). Update ``tables.py`` in the same change.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

VERSION_TABLE = "songsmith_jobs_version"
HERE = Path(__file__).resolve().parent
_PG_LOCK_KEY = 0x736F6E67736D6A62  # "songsmjb": one advisory lock for the migration


def alembic_config(connection=None):  # noqa: ANN001, ANN201
    """An in-memory Alembic ``Config`` for these migrations (optionally bound to a connection)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """This code's head revision id."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"job store migrations have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: empty database)."""
    from alembic.runtime.migration import MigrationContext

    from ..db import BEGIN_OPTION

    with engine.connect() as conn:
        conn = conn.execution_options(**{BEGIN_OPTION: "DEFERRED"})
        with conn.begin():
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()


def upgrade(engine_or_url: Engine | str | URL, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (default head) under a lock; return the new revision.

    Raises ``MigrationError`` when the database is at a revision this code does not know
    (e.g. a newer deploy migrated it) and ``StoreUnavailable`` when it cannot be reached.
    """
    from alembic import command
    from alembic.util import CommandError

    from ..db import is_managed_sqlite, make_engine
    from ..errors import MigrationError

    own = not isinstance(engine_or_url, Engine)
    engine = make_engine(engine_or_url) if own else engine_or_url
    try:
        head = head_revision()
        if revision == "head" and current_revision(engine) == head:
            return head
        with engine.connect() as conn:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                elif engine.dialect.name == "sqlite" and not is_managed_sqlite(engine):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    command.upgrade(alembic_config(conn), revision)
                except CommandError as exc:
                    raise MigrationError(f"cannot migrate the job store to {revision!r}: {exc}") from exc
        return current_revision(engine)
    finally:
        if own:
            engine.dispose()
