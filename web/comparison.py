"""A shadow model against the served reference on one job, for admins: agreement, the disagreements with their
images, and on labelled images both AUCs with paired-bootstrap CIs (models/comparison.py), from the shadow table
(db/shadow.py). Also the role change behind the page's promote and demote buttons, audited."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import abort, g, url_for

from db.models import Job
from db.shadow import paired_rows
from models.catalogue import CatalogueError
from models.comparison import agreement, paired_auc
from models.roles import change_role, history
from web.audit import audit
from web.extensions import get_catalogue, get_db, get_settings

LISTED = 200  # disagreements listed at most; the counts are always exact


def compare_on_job(name: str, job: Job) -> dict[str, Any]:
    catalogue = get_catalogue()
    try:
        entry = catalogue.entry(name)
    except CatalogueError as error:
        abort(404, str(error))
    reference = catalogue.ensemble.name if catalogue.ensemble else catalogue.headline
    rows = paired_rows(get_db(), job.id, name, reference)
    p = np.array([r.probability for r in rows])
    reference_p = np.array([r.reference_probability for r in rows])
    disagreements = [r for r in rows if r.label != r.reference_label]
    labelled = [i for i, r in enumerate(rows) if r.truth is not None]
    truth = np.array([rows[i].truth for i in labelled], dtype=int)
    return {
        "model": name,
        "role": entry.role,
        "versions": sorted({r.version for r in rows}),
        "reference": reference,
        "reference_versions": sorted({r.reference_version for r in rows}),
        "job_id": job.id,
        "agreement": agreement([r.label for r in rows], [r.reference_label for r in rows], p, reference_p),
        "disagreements": {"count": len(disagreements), "listed": min(len(disagreements), LISTED)},
        "disagreeing_images": [_image(r) for r in disagreements[:LISTED]],
        "labelled": paired_auc(truth, p[labelled], reference_p[labelled]) if labelled else {"n": 0, "auc": None},
        "history": history(get_settings().models_dir, name),
    }


def _image(row) -> dict[str, Any]:
    return {
        "image_id": row.image_id,
        "path": row.path,
        "probability": row.probability,
        "label": row.label,
        "reference_probability": row.reference_probability,
        "reference_label": row.reference_label,
        "truth": None if row.truth is None else ("disease" if row.truth else "healthy"),
        "image_url": url_for("api.image_png", image_id=row.image_id),
        "thumbnail_url": url_for("dashboard.thumbnail", image_id=row.image_id, v="done"),
    }


def set_role(name: str, role: str, version: str | None = None) -> dict[str, Any]:
    """Change a model's role as the request's admin, recorded in the catalogue's history and the audit log; the
    caller commits. An unknown model is a 404; a change the catalogue refuses is a 409 saying why."""
    try:
        get_catalogue().entry(name)
    except CatalogueError as error:
        abort(404, str(error))
    try:
        record = change_role(get_settings().models_dir, name, role, g.user.username, version)
    except CatalogueError as error:
        abort(409, str(error))
    audit("model.role", None, **{k: record[k] for k in ("model", "from_role", "to_role", "from_version", "to_version")})
    return record
