"""Identical DICOM instances received again, counted on their job; idempotency keys tied to the job they made.

Revision ID: 0010_security
Revises: 0009_prevalence
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_security"
down_revision: str | None = "0009_prevalence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("resent", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("job_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_idempotency_keys_job", "jobs", ["job_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_idempotency_keys_job_id", ["job_id"])


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_index("ix_idempotency_keys_job_id")
        batch.drop_constraint("fk_idempotency_keys_job", type_="foreignkey")
        batch.drop_column("job_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("resent")
