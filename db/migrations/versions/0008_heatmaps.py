"""Heat maps per job: whether the worker draws Grad-CAM heat maps for the job's images.

- jobs.heatmaps: set when the job is created (the API's `heatmaps` field, default RADBATCH_HEATMAPS); existing
  jobs get true, which only matters for images still to be predicted.

Revision ID: 0008_heatmaps
Revises: 0007_findings
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_heatmaps"
down_revision: str | None = "0007_findings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("heatmaps", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("heatmaps")
