"""Engine construction for the two supported backends.

SQLite (``sqlite:///path/jobs.db``): WAL journal, ``synchronous=NORMAL``, a busy timeout, and
pysqlite's own transaction handling switched off so that *every* write transaction is
``BEGIN IMMEDIATE``: it takes the database write lock up front, which makes read-then-write
sequences (claims, idempotent creates) atomic across threads and processes, and avoids WAL's
``SQLITE_BUSY_SNAPSHOT`` upgrade failures. Read-only transactions use a plain deferred BEGIN
(WAL readers never block the writer). The file must be on a local disk (WAL needs shared
memory; no NFS). In-memory databases are refused: each pooled connection would see its own.

PostgreSQL (``postgresql+psycopg://user:pass@host:port/db``): psycopg 3, READ COMMITTED,
``pool_pre_ping`` so connections killed by a server restart are replaced transparently.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from .errors import StoreUnavailable
from .util import as_utc, scrub, utcnow

BEGIN_OPTION = "songsmith_sqlite_begin"  # execution option: "IMMEDIATE" (default) | "DEFERRED"


def _sqlite_on_connect(dbapi_conn: Any, _record: Any, busy_timeout_s: float = 10.0) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
    cur = dbapi_conn.cursor()
    try:
        _enable_wal(cur, busy_timeout_s)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _enable_wal(cur: Any, timeout_s: float) -> None:
    """Switch the file to WAL (persistent: once per database), waiting for the lock it needs.

    Changing the journal mode takes an exclusive lock that SQLite does not wait for: when several
    replicas open a new database at the same moment, all but one got "database is locked" at
    once, whatever the busy timeout. Retry within the busy timeout, as any other lock wait does.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            remaining = deadline - time.monotonic()
            if "locked" not in str(exc) or remaining <= 0:
                raise
        time.sleep(min(delay, remaining))
        delay = min(0.2, delay * 2)


def _sqlite_on_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN DEFERRED")


def is_managed_sqlite(engine: Engine) -> bool:
    """True for an SQLite engine built by :func:`make_engine` (it emits its own BEGIN)."""
    return engine.dialect.name == "sqlite" and event.contains(engine, "begin", _sqlite_on_begin)


def make_engine(
    url: str | URL,
    *,
    busy_timeout_s: float = 10.0,
    connect_timeout_s: float = 5.0,
    pool_size: int = 5,
    max_overflow: int = 10,
) -> Engine:
    """Create the engine for ``url`` (``sqlite:///file`` or ``postgresql+psycopg://...``)."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database in (None, "", ":memory:") or (u.database or "").startswith("file::memory:"):
            raise ValueError("the job store needs an SQLite *file* (sqlite:///path/jobs.db)")
        if not u.database.startswith("file:"):
            # Convenience for the default sqlite:///var/jobs.db; a failure here surfaces as
            # StoreUnavailable ("unable to open database file") on first use.
            with contextlib.suppress(OSError):
                Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            u,
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", functools.partial(_sqlite_on_connect, busy_timeout_s=busy_timeout_s))
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql":
        if u.get_driver_name() not in ("psycopg", "psycopg_async") and u.drivername != "postgresql":
            raise ValueError("PostgreSQL job stores use psycopg 3: postgresql+psycopg://...")
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {"application_name": "songsmith-jobs"}
        if "connect_timeout" not in u.query:
            connect_args["connect_timeout"] = max(2, int(round(connect_timeout_s)))
        return create_engine(
            u,
            connect_args=connect_args,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            pool_recycle=1800,
        )
    raise ValueError(f"unsupported job store backend {backend!r} (use sqlite or postgresql)")


_UNAVAILABLE_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


class Database:
    """One pooled engine and the transaction rules every store on it follows.

    The job store and the webhook store share one of these, so a job's terminal status and its
    webhook delivery are written in the same transaction.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 10.0, connect_timeout_s: float = 5.0,
                 pool_size: int = 5, clock: Callable[[], datetime] | None = None) -> None:
        parsed = make_url(url)
        self._clock = clock or utcnow
        self._password = parsed.password
        self.url = parsed.render_as_string(hide_password=True)  # safe to log
        self.engine = make_engine(parsed, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s,
                                  pool_size=pool_size)
        self.backend = self.engine.dialect.name  # "sqlite" | "postgresql"
        self.pg = self.backend == "postgresql"

    def now(self) -> datetime:
        return as_utc(self._clock())

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        orig = getattr(exc, "orig", None) or exc
        detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        detail = scrub(detail, self._password)[:300]
        what = "busy" if "database is locked" in detail else "unavailable"
        return StoreUnavailable(f"job store {what} ({self.url}): {detail}")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Connection failures become StoreUnavailable (503 upstream), with the password hidden."""
        try:
            yield
        except _UNAVAILABLE_ERRORS as exc:
            raise self.unavailable(exc) from None
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise self.unavailable(exc) from None
            raise

    @contextlib.contextmanager
    def tx(self, *, write: bool = True) -> Iterator[Connection]:
        with self.guard(), self.engine.connect() as conn:
            if not write:
                conn = conn.execution_options(**{BEGIN_OPTION: "DEFERRED"})
            with conn.begin():
                yield conn

    def lock(self, stmt: Any, *, skip_locked: bool = False) -> Any:
        """Row lock on PostgreSQL (SQLite already holds the database write lock)."""
        return stmt.with_for_update(skip_locked=skip_locked) if self.pg else stmt

    def close(self) -> None:
        self.engine.dispose()
