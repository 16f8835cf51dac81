"""The model catalogue: shadow models' predictions in their own table, and the headline row of each image marked.

Revision ID: 0016_catalogue
Revises: 0014_reviews
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_catalogue"
down_revision: str | None = "0015_priority"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shadow_predictions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_name", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("prevalence", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("image_id", "model_name", "model_version", name="uq_shadow_image_model_version"),
    )
    op.create_index("ix_shadow_predictions_image_id", "shadow_predictions", ["image_id"])
    op.create_index("ix_shadow_model_version", "shadow_predictions", ["model_name", "model_version"])
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("headline", sa.Boolean(), nullable=False, server_default=sa.false()))
    # before the catalogue, the ensemble's row was always the study's (db/studies.py named it)
    op.execute("UPDATE predictions SET headline = true WHERE model_name = 'ensemble'")


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("headline")
    op.drop_index("ix_shadow_model_version", table_name="shadow_predictions")
    op.drop_index("ix_shadow_predictions_image_id", table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
