"""Site tools: labels and their evaluation, the audit log, job webhooks, deferred file deletions; and on SQLite,
ids of jobs and images that are never reused after a purge (AUTOINCREMENT).

Revision ID: 0004_sitetools
Revises: 0003_hardening
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_sitetools"
down_revision: str | None = "0003_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEBHOOK_STATES = ("waiting", "due", "sending", "delivered", "failed")


def _set_sqlite_autoincrement(enabled: bool) -> None:
    """Rebuild `jobs` and `images` with (or without) AUTOINCREMENT, keeping every row.

    SQLite's rebuild drops the old table; with foreign keys on, that would cascade into the child tables,
    so they are switched off first (which SQLite allows only outside a transaction: checked, not assumed).
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("cannot switch SQLite foreign keys off inside a transaction; run this migration alone")
    for table in ("jobs", "images"):
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": enabled}):
            pass


def upgrade() -> None:
    _set_sqlite_autoincrement(True)
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_job_at", "audit_events", ["job_id", "at"])
    op.create_index("ix_audit_events_user_at", "audit_events", ["user_id", "at"])
    op.create_index("ix_audit_events_action_at", "audit_events", ["action", "at"])

    op.create_table(
        "label_sets",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.String(length=80), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("ignored_columns", sa.JSON(), nullable=False),
        sa.Column("evaluation_key", sa.String(length=200), nullable=True),
        sa.Column("evaluation", sa.JSON(), nullable=True),
        sa.Column("roc_svg", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_table(
        "job_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("findings", sa.JSON(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_labels_job_id", "job_labels", ["job_id"])
    op.create_index("ix_job_labels_image_id", "job_labels", ["image_id"])

    op.create_table(
        "job_webhooks",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("state", sa.Enum(*WEBHOOK_STATES, name="webhookstate", native_enum=False, length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_job_webhooks_state_next", "job_webhooks", ["state", "next_attempt_at"])

    op.create_table(
        "deferred_deletions",
        sa.Column("image_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("image_id"),
    )
    op.create_index("ix_deferred_deletions_due_at", "deferred_deletions", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_deferred_deletions_due_at", table_name="deferred_deletions")
    op.drop_table("deferred_deletions")
    op.drop_index("ix_job_webhooks_state_next", table_name="job_webhooks")
    op.drop_table("job_webhooks")
    op.drop_index("ix_job_labels_image_id", table_name="job_labels")
    op.drop_index("ix_job_labels_job_id", table_name="job_labels")
    op.drop_table("job_labels")
    op.drop_table("label_sets")
    op.drop_index("ix_audit_events_action_at", table_name="audit_events")
    op.drop_index("ix_audit_events_user_at", table_name="audit_events")
    op.drop_index("ix_audit_events_job_at", table_name="audit_events")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    _set_sqlite_autoincrement(False)
