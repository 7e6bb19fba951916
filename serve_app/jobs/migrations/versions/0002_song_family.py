"""Songs have families and can be deleted: jobs.parent_id (the song an edit was made from) and
jobs.deleted_at (a deleted song's tombstone, so a repeated DELETE is still answered 204).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("deleted_at", TS, nullable=True))
    op.create_index("ix_jobs_parent_id", "jobs", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_parent_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("parent_id")
