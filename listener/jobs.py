"""The listener's jobs: one per association, named after the calling AE title and the time it began.

A job stays open while its association lasts and is closed (its last images queued) when the association is
released, aborted or dropped. A job still open when the listener starts was cut off by a listener that died
(killed, crashed, the machine restarted): the next association from the same AE title continues it, so the
instances the sender sends again are recognised and stored once (see `listener.storing`).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.jobs import PRIORITIES, create_job, refresh_job
from db.models import Job, JobStatus, User

logger = logging.getLogger(__name__)
NAME_PREFIX = "DICOM from "
_NAME = re.compile(r"^DICOM from (?P<aet>.+) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


class ListenerUserMissing(LookupError):
    """RADBATCH_DICOM_USER names no user; the listener cannot own any job."""


def job_name(calling_aet: str, started_at: datetime) -> str:
    return f"{NAME_PREFIX}{calling_aet} at {started_at:%Y-%m-%d %H:%M:%S} UTC"


def calling_aet_of(name: str) -> str | None:
    """The calling AE title a listener job's name carries, or None for any other job."""
    match = _NAME.match(name)
    return match.group("aet") if match else None


def listener_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ListenerUserMissing(
            f"RADBATCH_DICOM_USER={username!r} is not a user; create it (python -m db.setup create-user) or set another"
        )
    return user


def aet_priority(rules: tuple[str, ...], calling_aet: str) -> str:
    """The lane RADBATCH_DICOM_AET_PRIORITIES (AET=urgent|normal|bulk pairs) gives this calling AE title."""
    for rule in rules:
        aet, _, priority = rule.partition("=")
        if aet.strip() == calling_aet and priority.strip() in PRIORITIES:
            return priority.strip()
    return "normal"


def start_job(session: Session, user: User, calling_aet: str, started_at: datetime, priority: str = "normal") -> int:
    """A new open job for an association (flushed, not committed)."""
    return create_job(session, user, job_name(calling_aet, started_at), is_open=True, priority=priority).id


def interrupted_jobs(session: Session, user_ids: list[int]) -> dict[str, int]:
    """Open listener jobs of these users, by calling AE title (the newest per title): at start-up, no association
    owns them."""
    query = select(Job.id, Job.name).where(
        Job.user_id.in_(user_ids), Job.is_open, Job.status != JobStatus.cancelled, Job.name.startswith(NAME_PREFIX)
    )
    found: dict[str, int] = {}
    for job_id, name in session.execute(query.order_by(Job.id)):
        aet = calling_aet_of(name)
        if aet is not None:
            found[aet] = job_id
    return found


def accepting(session: Session, job_id: int) -> bool:
    job = session.get(Job, job_id)
    return job is not None and job.is_open and job.status != JobStatus.cancelled


def close_job(session: Session, job_id: int) -> bool:
    """No more files for the job (flushed, not committed); False if it was gone or already closed."""
    job = session.get(Job, job_id)
    if job is None or not job.is_open:
        return False
    job.is_open = False
    refresh_job(session, job_id)
    return True
