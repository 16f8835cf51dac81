"""The prevalence each prediction's and finding's probability and threshold are expressed at (RADBATCH_PREVALENCE).

Revision ID: 0009_prevalence
Revises: 0008_heatmaps
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_prevalence"
down_revision: str | None = "0008_heatmaps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TABLES = ("predictions", "findings")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("prevalence", sa.Float(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("prevalence")
