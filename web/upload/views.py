"""The portal page; the upload itself goes through the API (open job, chunks of files, close)."""

from __future__ import annotations

from flask import render_template

from formats import extensions
from web.auth.identity import login_required
from web.extensions import get_settings
from web.upload import bp

CHUNK_FILES = 50
CHUNK_BYTES = 20 * 2**20


@bp.get("/upload")
@login_required
def portal():
    settings = get_settings()
    return render_template(
        "upload/upload.html",
        chunk_files=CHUNK_FILES,
        chunk_bytes=CHUNK_BYTES,
        max_file_bytes=settings.max_file_mb * 2**20,
        max_file_mb=settings.max_file_mb,
        extensions=extensions(),
        heatmaps=settings.heatmaps,
    )
