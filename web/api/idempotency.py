"""`Idempotency-Key` on upload requests: a retry with the same key gets the first response and creates nothing.

The key, the user, a fingerprint of the request (method, path, form fields, each file's field, name and
SHA-256) and the response body are committed in the same transaction as the rows the request created: either
both exist or neither. A retry with the same key and the same request gets the stored response (with
`Idempotent-Replayed: true`); the same key with a different request is refused with 422. Of two requests racing
with one key, the second to commit hits the unique (user, key) constraint, rolls back, deletes the files it
stored and answers with the first one's response. Only successful responses are stored: a failed request
created nothing, so its retry simply runs again. Keys are kept for 24 hours (`db.idempotency.KEEP_FOR`), and are
deleted with the job they made or filled (a purged job is never replayed).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import Response, abort, current_app, g, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.idempotency import find_key, remember_key
from db.models import IdempotencyKey
from storage import storage_for
from web.api.errors import error_response
from web.extensions import get_db, get_settings

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class _LostRace(Exception):
    def __init__(self, stored: IdempotencyKey):
        super().__init__(stored.key)
        self.stored = stored


def request_key() -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        abort(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, for example a UUID")
    return key


def fingerprint() -> str:
    """SHA-256 of what the request asks for: method, path, form fields (by name) and files (in order)."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    for name in sorted(request.form.keys(), key=lambda name: name or ""):  # a part without a usable name: None
        digest.update(json.dumps([name, request.form.getlist(name)]).encode())
    for field, upload in request.files.items(multi=True):
        upload.stream.seek(0)
        content = hashlib.file_digest(upload.stream, "sha256")
        upload.stream.seek(0)
        digest.update(json.dumps([field, upload.filename, content.hexdigest()]).encode())
    return digest.hexdigest()


def _replay(stored: IdempotencyKey, request_fingerprint: str) -> Response:
    if stored.fingerprint != request_fingerprint:
        return error_response(
            422,
            f"{HEADER} {stored.key!r} was already used for a different request (other files or fields); "
            "send a new key with a new request",
        )
    response = current_app.response_class(stored.response, status=stored.status_code, mimetype="application/json")
    if stored.location:
        response.headers["Location"] = stored.location
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Honour an `Idempotency-Key` header on `view`, which must commit through `commit_once`."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        key = request_key()
        if key is None:
            return view(*args, **kwargs)
        g.idempotency = (key, fingerprint())
        stored = find_key(get_db(), g.user, key)
        if stored is not None:
            return _replay(stored, g.idempotency[1])
        try:
            return view(*args, **kwargs)
        except _LostRace as race:
            return _replay(race.stored, g.idempotency[1])

    return wrapped


def commit_once(
    session: Session,
    body: dict,
    status: int,
    location: str | None = None,
    stored_files: Iterable[str] = (),
    job_id: int | None = None,
) -> None:
    """Commit the request's rows; under an `Idempotency-Key`, together with the key and the response `body`."""
    pending = g.get("idempotency")
    if pending is None:
        session.commit()
        return
    key, request_fingerprint = pending
    remember_key(session, g.user, key, request_fingerprint, status, json.dumps(body), location, job_id)
    files = list(stored_files)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        stored = find_key(session, g.user, key)
        if stored is None:
            raise
        storage_for(get_settings()).delete_all(files)  # the other request with this key stored them first
        raise _LostRace(stored) from None
