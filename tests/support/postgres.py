"""A real PostgreSQL server for tests: the distribution's server binaries in a temp dir.

Why real: ``FOR UPDATE SKIP LOCKED`` claims, advisory locks, transactional DDL and what a
dead server looks like to psycopg are exactly what SQLite or a mock cannot show.

Guarantees:
- binds 127.0.0.1 only, on a port picked free at construction; the unix socket lives in the
  server's own temp dir (never ``/var/run/postgresql``);
- password auth over TCP (scram-sha-256, random password), so tests can check that error
  messages never leak it; ``trust`` only on the private unix socket;
- works as root (CI) by running ``initdb``/``pg_ctl`` as the ``postgres`` user via
  ``runuser`` (initdb refuses root) in a dir under ``$TMPDIR`` owned by that user -- pytest's
  ``tmp_path`` is unusable there, its ``/tmp/pytest-of-root`` is mode 0700 -- and as any
  non-root user directly;
- durability tuned for speed (``fsync=off``: data survives a server crash, not an OS crash);
- always stopped: ``stop()`` is ``pg_ctl stop -m immediate`` (a crash, instant) with a
  SIGKILL fallback from ``postmaster.pid``; ``__exit__``, the fixtures and an ``atexit`` hook
  all call it; ``close()`` also removes the directory;
- ``stop()`` / ``start()`` keep port, password and data, for outage tests.

Usage::

    with postgres_server() as url:           # a SQLAlchemy URL (postgresql+psycopg://...)
        engine = sqlalchemy.create_engine(url)

    with PostgresServer() as pg:             # for fault injection
        pg.stop(); pg.start(); pg.url

    postgres_url = make_postgres_fixture("session")        # in a test module: a fixture

Missing binaries skip the tests (``require_postgres()``), unless ``REQUIRE_PG_TESTS=1``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from serve_app.localdev.processes import ManagedServer

_LIVE: set[PostgresServer] = set()  # strong refs: a running server is never GC'd unstopped


class PostgresNotFound(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl) are not installed or not usable."""


def find_pg_bindir() -> Path:
    """Locate the dir with ``initdb``/``pg_ctl``: ``$PG_BINDIR``, the newest
    ``/usr/lib/postgresql/*/bin``, then ``$PATH``."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])

    def _major(path: str) -> int:
        try:
            return int(Path(path).parent.name.split(".")[0])
        except ValueError:
            return 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for cand in candidates:
        d = Path(cand)
        if all(os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql "
        "(e.g. apt-get install postgresql-15) or set PG_BINDIR"
    )


def _run_as_user() -> str | None:
    """The user to run the server as when we are root (``postgres``), else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresNotFound("running as root but there is no 'postgres' user") from exc
    if not shutil.which("runuser"):
        raise PostgresNotFound("running as root but 'runuser' is not installed")
    return "postgres"


def require_postgres() -> None:
    """Skip the calling test if PostgreSQL is unusable; fail instead if REQUIRE_PG_TESTS=1."""
    import pytest

    try:
        find_pg_bindir()
        _run_as_user()
    except PostgresNotFound as exc:
        if os.environ.get("REQUIRE_PG_TESTS") == "1":
            pytest.fail(f"REQUIRE_PG_TESTS=1 but {exc}")
        pytest.skip(str(exc))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _kill_all_at_exit() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_kill_all_at_exit)


class PostgresServer(ManagedServer):
    """One PostgreSQL cluster in a private temp dir, listening on 127.0.0.1:``port``."""

    def __init__(
        self,
        *,
        user: str = "app",
        database: str = "songsmith",
        port: int | None = None,
        password: str | None = None,
        startup_timeout: float = 30.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bindir = find_pg_bindir()
        self.os_user = _run_as_user()
        # Short path on purpose: the unix socket path must stay under ~107 bytes.
        self.base_dir = Path(tempfile.mkdtemp(prefix="pg-")).resolve()
        if self.os_user:
            shutil.chown(self.base_dir, user=self.os_user)
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.user = user
        self.database = database
        self.password = password or secrets.token_urlsafe(18)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            **(settings or {}),
        }
        self._initialized = False
        self._running = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, database={self.database!r}, running={self._running})"

    # -- URLs ------------------------------------------------------------------------------

    def url_for(self, database: str | None = None, *, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL (with the password) for ``database`` (default: the main one)."""
        from urllib.parse import quote

        db = database or self.database
        return f"{driver}://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return self.url_for()

    # -- process control -------------------------------------------------------------------

    def _cmd(self, exe: str, *args: str) -> list[str]:
        argv = [str(self.bindir / exe), *args]
        return ["runuser", "-u", self.os_user, "--", *argv] if self.os_user else argv

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed argv
            argv,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _initdb(self) -> None:
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.os_user:
            shutil.chown(pwfile, user=self.os_user)
        try:
            proc = self._run(
                self._cmd(
                    "initdb",
                    "-D", str(self.data_dir),
                    "-U", self.user,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                ),
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        self._initialized = True

    def start(self) -> PostgresServer:
        """Start (or restart, same port and data); initdb and create the database on first use."""
        with self._lock:
            if self._running:
                return self
            if not self._initialized:
                self._initdb()
            opts = f"-p {self.port} -k {self.base_dir} " + " ".join(
                f"-c {k}={v}" for k, v in self.settings.items()
            )
            _LIVE.add(self)
            self._running = True  # from here on stop() must run, even if start fails
            try:
                proc = self._run(
                    self._cmd(
                        "pg_ctl", "-D", str(self.data_dir), "-o", opts, "-l", str(self.log_path),
                        "-w", "-t", str(int(self.startup_timeout)), "start",
                    ),
                    timeout=self.startup_timeout + 10,
                )
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"pg_ctl start failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                        + self.log_tail()
                    )
                self._wait_ready()
                self._ensure_database(self.database)
            except BaseException:
                self.stop()
                raise
            return self

    def _connect(self, database: str = "postgres", **kwargs: Any):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password,
            dbname=database, connect_timeout=3, **kwargs,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                with self._connect() as conn:
                    conn.execute("SELECT 1")
                return
            except Exception as exc:  # noqa: BLE001 - retry until the deadline
                last = exc
                time.sleep(0.05)
        raise RuntimeError(f"postgres on port {self.port} not ready: {last}\n{self.log_tail()}")

    def _ensure_database(self, name: str) -> None:
        with self._connect(autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh empty database; returns its SQLAlchemy URL (per-test isolation)."""
        name = name or f"t_{secrets.token_hex(6)}"
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        with self._connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with self._connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop now (``-m immediate``: a crash, no checkpoint); data and port are kept."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            try:
                if self.data_dir.exists():
                    proc = self._run(
                        self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w",
                                  "-t", "20", "stop"),
                        timeout=30,
                    )
                    if proc.returncode != 0:
                        self._kill_postmaster()
            except (OSError, subprocess.SubprocessError):
                self._kill_postmaster()
            finally:
                _LIVE.discard(self)

    def _kill_postmaster(self) -> None:
        """Fallback: SIGKILL the postmaster named in ``postmaster.pid`` (its children follow)."""
        pidfile = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self._running

    def restart(self) -> PostgresServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)



@contextlib.contextmanager
def postgres_server(**kwargs: Any) -> Iterator[str]:
    """Start a throwaway server, yield its SQLAlchemy URL, always stop it and remove its dir."""
    server = PostgresServer(**kwargs)
    try:
        server.start()
        yield server.url
    finally:
        server.close()


def make_postgres_fixture(scope: str = "session", *, yield_server: bool = False,
                          **server_kwargs: Any) -> Callable[..., Any]:
    """Build a pytest fixture starting a *private* server for its scope (skipped, or failed
    under REQUIRE_PG_TESTS=1, if PostgreSQL is missing). It yields the SQLAlchemy URL, or the
    ``PostgresServer`` itself with ``yield_server=True`` (for ``create_database()``/outages)::

        postgres_url = make_postgres_fixture("session")
        pg = make_postgres_fixture("module", yield_server=True)
    """
    import pytest

    @pytest.fixture(scope=scope)
    def _fixture() -> Iterator[Any]:
        require_postgres()
        server = PostgresServer(**server_kwargs)
        try:
            server.start()
            yield server if yield_server else server.url
        finally:
            server.close()

    return _fixture
