"""Drift monitoring: each image's pixel mean and standard deviation after preprocessing, its DICOM Modality, and an
index on when images were processed (the daily summaries read a window of days).

Revision ID: 0017_drift
Revises: 0014_reviews
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_drift"
down_revision: str | None = "0016_catalogue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("pixel_mean", sa.Float(), nullable=True))
        batch.add_column(sa.Column("pixel_std", sa.Float(), nullable=True))
        batch.add_column(sa.Column("modality", sa.String(16), nullable=True))
    op.create_index("ix_images_processed", "images", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_images_processed", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("modality")
        batch.drop_column("pixel_std")
        batch.drop_column("pixel_mean")
