"""Reliability: when each image was queued, how many deliveries started work on it, the SHA-256 of its bytes,
and the idempotency keys of upload requests.

- images.queued_at: when the image's last message was sent; the recovery sweep selects by it.
- images.attempts: deliveries that started work on the image; past RADBATCH_MAX_ATTEMPTS it fails with the reason.
- images.sha256: of the stored bytes, so a client can resume an upload and skip files already stored.
- idempotency_keys: (user, key) -> the first successful response, replayed to retries of the same request.

Existing queued images get queued_at = created_at.

Revision ID: 0005_reliability
Revises: 0004_sitetools
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_reliability"
down_revision: str | None = "0004_sitetools"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.execute("UPDATE images SET queued_at = created_at WHERE status = 'queued'")
    op.create_index("ix_images_status_queued", "images", ["status", "queued_at"])
    op.create_index("ix_images_job_sha256", "images", ["job_id", "sha256"])

    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("location", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_images_job_sha256", table_name="images")
    op.drop_index("ix_images_status_queued", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("attempts")
        batch.drop_column("queued_at")
        batch.drop_column("sha256")
