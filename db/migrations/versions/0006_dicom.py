"""DICOM: per-image DICOM metadata, the patient's pseudonym, and notes on a predicted image.

- images.notes: "; "-separated warnings (a lateral view, another body part, the first of several frames...).
- images.study_instance_uid ... transfer_syntax_uid, pixel spacing: as the stored DICOM file says.
- images.patient_pseudonym: HMAC-SHA256 of PatientID; images.patient_id / patient_name only when
  RADBATCH_DEIDENTIFY=false.
- Indexes: (job_id, study_instance_uid) for results filtered by study; patient_pseudonym.

Revision ID: 0006_dicom
Revises: 0005_reliability
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_dicom"
down_revision: str | None = "0005_reliability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("notes", sa.Text()),
    ("study_instance_uid", sa.String(length=64)),
    ("series_instance_uid", sa.String(length=64)),
    ("sop_instance_uid", sa.String(length=64)),
    ("accession_number", sa.String(length=64)),
    ("study_date", sa.String(length=16)),
    ("view_position", sa.String(length=32)),
    ("photometric_interpretation", sa.String(length=32)),
    ("bits_stored", sa.Integer()),
    ("transfer_syntax_uid", sa.String(length=64)),
    ("pixel_spacing_row_mm", sa.Float()),
    ("pixel_spacing_column_mm", sa.Float()),
    ("patient_pseudonym", sa.String(length=64)),
    ("patient_id", sa.String(length=64)),
    ("patient_name", sa.String(length=255)),
)


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        for name, column_type in COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))
    op.create_index("ix_images_job_study", "images", ["job_id", "study_instance_uid"])
    op.create_index("ix_images_patient_pseudonym", "images", ["patient_pseudonym"])


def downgrade() -> None:
    op.drop_index("ix_images_patient_pseudonym", table_name="images")
    op.drop_index("ix_images_job_study", table_name="images")
    with op.batch_alter_table("images") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
