"""Deliver a finished job's webhook: one signed POST per attempt, retried with backoff, every attempt in SQL.

The body is `{"event": "job.finished", "sent_at": ..., "job": <the job's JSON>}`; the header
`X-Radbatch-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body bytes under the job's webhook
secret, and `X-Radbatch-Delivery` (the job id) lets a receiver drop a repeat. A 2xx answer delivers it;
anything else schedules the next attempt in SQL (`db.webhooks.retry_delay`: 5, 10, 20 ... s, at most 30 min,
MAX_ATTEMPTS in all), which the worker's housekeeping sends once due. No delayed message waits in Redis: it
would hold a Celery message unacknowledged for minutes, and the recovery sweep waits for a quiet broker. The
attempt runs outside any transaction; a claim (a lease in `job_webhooks`) lets one delivery at a time send it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

import requests
from sqlalchemy.orm import Session, sessionmaker

from broker.destinations import BlockedDestination, DestinationPolicy
from db.models import Job, iso, utcnow
from db.session import session_scope
from db.webhooks import JobWebhook, claim, record_attempt
from worker import process
from worker.webhook_transport import blocked, failure_text, guarded_session

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Radbatch-Signature"
TIMEOUTS_S = (3.0, 5.0)  # connect, read: one attempt holds a worker process for at most this long


@dataclass(frozen=True)
class Attempt:
    sent: bool  # False: not due, already delivered, claimed by another delivery, or the job is gone
    error: str | None = None
    retry_in: float | None = None


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(job: Job) -> bytes:
    return json.dumps({"event": "job.finished", "sent_at": iso(utcnow()), "job": job.to_dict()}).encode()


def post(url: str, secret: str, job_id: int, body: bytes, policy: DestinationPolicy) -> tuple[str | None, bool]:
    """POST the body: (None, False) on a 2xx answer, else (why not, whether retrying is pointless).

    Only where the policy allows (`broker.destinations`), checked on every connection; redirects are not
    followed; the reason never quotes the receiver's answer (its status code only).
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "radbatch-webhook",
        "X-Radbatch-Event": "job.finished",
        "X-Radbatch-Delivery": str(job_id),
        SIGNATURE_HEADER: sign(secret, body),
    }
    try:
        with guarded_session(policy) as session:
            response = session.post(url, data=body, headers=headers, timeout=TIMEOUTS_S, allow_redirects=False)
    except BlockedDestination as error:
        return str(error), True
    except requests.RequestException as error:
        return failure_text(error), blocked(error)
    if 200 <= response.status_code < 300:
        return None, False
    if 300 <= response.status_code < 400:
        return f"HTTP {response.status_code}: a redirect, which webhooks do not follow; give the final URL", False
    return f"HTTP {response.status_code}", False


def deliver(factory: sessionmaker[Session], job_id: int) -> Attempt:
    """One delivery attempt of the job's webhook, if it is due and nobody else is sending it."""
    with session_scope(factory) as session:
        webhook = claim(session, job_id, utcnow())
        job = session.get(Job, job_id) if webhook is not None else None
        if webhook is None or job is None:
            return Attempt(sent=False)
        url, secret, body = webhook.url, webhook.secret, payload(job)
    policy = DestinationPolicy.from_setting(process.settings().webhook_allow)
    error, permanent = post(url, secret, job_id, body, policy)
    with session_scope(factory) as session:
        webhook = session.get(JobWebhook, job_id)
        if webhook is None:  # the job was purged meanwhile
            return Attempt(sent=True, error=error)
        retry_in = record_attempt(session, webhook, error, utcnow(), permanent)
        attempts, state = webhook.attempts, webhook.state.value
    if error is None:
        log.info("webhook of job %d delivered (attempt %d)", job_id, attempts)
    else:
        log.warning("webhook of job %d: attempt %d failed (%s); %s", job_id, attempts, error, state)
    return Attempt(sent=True, error=error, retry_in=retry_in)
