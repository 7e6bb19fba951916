"""Alembic environment: online only, on the connection passed in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from serve_app.jobs.migrations import VERSION_TABLE
from serve_app.jobs.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("job store migrations run online only: use serve_app.jobs.migrations.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
