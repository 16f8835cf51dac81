"""Index jobs.created_at for the admin's all-users job history.

(images (job_id, path) for `sort=path` was considered and left out: a path may be 1,024 characters,
which in UTF-8 can exceed PostgreSQL's B-tree entry limit and would make such an upload fail.)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_created", "jobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_created", table_name="jobs")
