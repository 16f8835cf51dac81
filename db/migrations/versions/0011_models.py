"""Every finding head's output is stored; `validated` says whether results may show it (models.findings), and
`operating_point` says how its threshold was chosen.

Revision ID: 0011_models
Revises: 0010_security
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_models"
down_revision: str | None = "0010_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        # rows written before this revision were all served findings
        batch.add_column(sa.Column("validated", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("operating_point", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("operating_point")
        batch.drop_column("validated")
