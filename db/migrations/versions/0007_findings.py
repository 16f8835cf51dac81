"""Per-finding probabilities: one `findings` row per image and served finding (models/findings.py).

Revision ID: 0007_findings
Revises: 0006_dicom
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_findings"
down_revision: str | None = "0006_dicom"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("finding", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "finding", name="uq_findings_image_finding"),
    )
    op.create_index("ix_findings_finding_label", "findings", ["finding", "label"])


def downgrade() -> None:
    op.drop_index("ix_findings_finding_label", table_name="findings")
    op.drop_table("findings")
