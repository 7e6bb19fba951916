"""The job-store tests' databases: one private PostgreSQL server for the session, and `store_url`,
a fresh empty database per test on SQLite and on that server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, make_postgres_fixture

pg_server = make_postgres_fixture("session", yield_server=True)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh, empty database URL for this test (schema created by the first JobStore)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = f"t_{secrets.token_hex(6)}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)
