"""`radbatch upload`: an open job, the folder in chunks (retried), close, then optionally wait for the predictions."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from tqdm import tqdm

from cli.client import ApiError, Client, ServerUnavailable
from cli.files import LocalFile, chunk_key, chunks, sha256_of

FINISHED = ("done", "failed", "cancelled")


@dataclass
class Upload:
    """What happened to one folder's files on their way to one job."""

    job_id: int
    sent: int = 0
    not_sent: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    stopped: str | None = None  # why the upload stopped early; the job then stays open


def _send_chunk(client: Client, upload: Upload, chunk: list[LocalFile], bar: tqdm) -> None:
    readable, contents = [], []
    for item in chunk:
        try:
            contents.append(item.path.read_bytes())
            readable.append(item)
        except OSError as error:
            upload.not_sent.append((item.relative, f"cannot read the file: {error.strerror or error}"))
    if not readable:
        return
    relatives = [item.relative for item in readable]
    key = chunk_key(upload.job_id, relatives, [hashlib.sha256(data).hexdigest() for data in contents])
    parts = [
        ("files", (PurePosixPath(item.relative).name, data, "application/octet-stream"))
        for item, data in zip(readable, contents, strict=True)
    ]
    try:
        # The real relative paths travel as form fields (UTF-8 text), never only in a part's file name.
        client.add_files(upload.job_id, parts, {"paths": relatives}, key)
    except ApiError as error:
        if error.status == 413 and len(readable) > 1:  # too big for one request: halve it
            middle = len(readable) // 2
            _send_chunk(client, upload, readable[:middle], bar)
            _send_chunk(client, upload, readable[middle:], bar)
            return
        if error.status in (404, 409):  # the job is gone, closed or cancelled: nothing more can be added
            raise
        upload.not_sent += [(relative, f"refused ({error.status}): {error.message}") for relative in relatives]
        return
    upload.sent += len(readable)
    bar.update(sum(item.size for item in readable))


def _declare_too_large(client: Client, upload: Upload, files: list[LocalFile]) -> None:
    """Files over the size limit are not sent, but the job still lists each one as failed, with the reason."""
    declared = [{"path": item.relative, "size": item.size} for item in files]
    key = chunk_key(upload.job_id, [item.relative for item in files], [f"size:{item.size}" for item in files])
    client.add_files(upload.job_id, [], {"too_large": json.dumps(declared)}, key)


def send_files(client: Client, job_id: int, files: list[LocalFile], max_file_bytes: int) -> Upload:
    """Send every file to the open job in chunks, then close it. A server that stays down stops the upload."""
    upload = Upload(job_id=job_id)
    too_large = [item for item in files if item.size > max_file_bytes]
    to_send = [item for item in files if item.size <= max_file_bytes]
    total = sum(item.size for item in to_send)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", disable=None) as bar:
        try:
            if too_large:
                _declare_too_large(client, upload, too_large)
            for chunk in chunks(to_send):
                _send_chunk(client, upload, chunk, bar)
        except ServerUnavailable as error:
            upload.stopped = str(error)
            return upload
        except ApiError as error:
            upload.stopped = f"the server refused more files ({error.status}): {error.message}"
            return upload
    client.close_job(job_id)
    return upload


def stored_files(client: Client, job_id: int) -> set[tuple[str, str]]:
    """(path, SHA-256) of every file the job already holds (GET /jobs/<id>/files)."""
    return {(item["path"], item["sha256"]) for item in client.stored_files(job_id) if item["sha256"]}


def still_to_send(files: list[LocalFile], stored: set[tuple[str, str]]) -> list[LocalFile]:
    """The files whose path and content the job does not hold yet."""
    return [item for item in files if (item.relative, sha256_of(item.path)) not in stored]


def wait_for_predictions(client: Client, job_id: int, poll_s: float = 2.0) -> dict:
    """Poll the job until it has finished, with a progress bar of images processed."""
    job = client.job(job_id)
    with tqdm(total=job["total"], unit="img", desc="predictions", disable=None) as bar:
        while True:
            bar.total = job["total"]
            bar.update(job["done"] + job["failed"] - bar.n)
            if job["status"] in FINISHED and not job["is_open"]:
                return job
            time.sleep(poll_s)
            job = client.job(job_id)


def failed_rows(client: Client, job_id: int) -> list[tuple[str, str]]:
    return [(row["path"], row["error"] or "failed") for row in client.results(job_id, status="failed")]


def summary_lines(job: dict | None, upload: Upload | None, failed: Iterable[tuple[str, str]]) -> list[str]:
    """A summary for a person: the job's counts, then every file that did not make it, and why."""
    lines = []
    if job is not None:
        lines.append(
            f"job {job['id']} ({job['name']}): {job['status']}, {job['done']} of {job['total']} images predicted, "
            f"{job['failed']} failed"
        )
    problems = list(upload.not_sent if upload else []) + list(failed)
    if problems:
        lines.append(f"{len(problems)} file(s) failed:")
        lines += [f"  {path}: {why}" for path, why in problems]
    if upload and upload.stopped:
        lines.append(f"upload stopped after {upload.sent} file(s): {upload.stopped}")
        lines.append(f"job {upload.job_id} stays open with what was stored; nothing was lost on the server")
    return lines
