"""Priority lanes: jobs.priority (urgent, normal or bulk) picks the Celery queue its batches go to
(broker.LANES); existing jobs are normal.

Revision ID: 0015_priority
Revises: 0011_models
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_priority"
down_revision: str | None = "0014_reviews"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.String(8), server_default="normal", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("priority")
