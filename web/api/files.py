"""Which files of a job are stored: lets a client resume an interrupted upload and skip what already arrived."""

from __future__ import annotations

import re

from flask import abort, g, jsonify, request
from sqlalchemy import func, select

from db.models import Image
from web.access import job_or_404
from web.api import bp
from web.extensions import get_db
from web.query_args import page_args

MAX_HASHES = 100
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _hashes() -> list[str]:
    raw = ",".join(request.args.getlist("sha256"))
    hashes = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if len(hashes) > MAX_HASHES:
        abort(400, f"at most {MAX_HASHES} sha256 values per request; list the job's files page by page instead")
    bad = [value for value in hashes if not _SHA256.fullmatch(value)]
    if bad:
        abort(400, f"sha256 must be 64 hexadecimal digits; got {bad[0][:80]!r}")
    return hashes


@bp.get("/jobs/<int:job_id>/files")
def stored_files(job_id: int):
    """The job's files in upload order, with the SHA-256 of the stored bytes; `?sha256=a,b` keeps only those."""
    job = job_or_404(g.user, job_id)
    page = page_args(request.args)
    query = select(Image).where(Image.job_id == job.id)
    hashes = _hashes()
    if hashes:
        query = query.where(Image.sha256.in_(hashes))
    db = get_db()
    total = db.scalar(query.with_only_columns(func.count(Image.id))) or 0
    images = db.scalars(query.order_by(Image.id).limit(page.per_page).offset(page.offset))
    files = [
        {"id": i.id, "path": i.path, "sha256": i.sha256, "size_bytes": i.size_bytes, "status": i.status.value}
        for i in images
    ]
    return jsonify({"files": files} | page.meta(total))
