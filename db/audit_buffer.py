"""Audit rows for reads of patient data, buffered in memory and written in bulk.

A read (an image, a heat map, a report, results, the file list) must not pay for a transaction of its own:
each row is appended to a list under a lock (microseconds), and one background thread per process inserts
everything buffered with a single INSERT at most every FLUSH_EVERY_S seconds, or at once past MAX_ROWS. The
time of each row is the time of the read, not of the write. What is buffered is written when the process exits
normally (atexit), and before the audit log is read in this process; a process killed outright loses at most
the last FLUSH_EVERY_S seconds of read rows (actions that change data are written in their own transaction).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.audit import ACTIONS, SYSTEM_ACTOR, AuditEvent
from db.models import User, utcnow

logger = logging.getLogger(__name__)
FLUSH_EVERY_S = 1.0
MAX_ROWS = 500  # a flush starts at once past this many
IDLE_ROUNDS = 60  # the flushing thread ends after this many rounds with nothing to write
KEEP_AT_MOST = 100_000  # rows kept for a retry while the database is down; older ones are dropped (and logged)


class AuditBuffer:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_pid: int | None = None  # gunicorn forks workers: each process needs a thread of its own
        atexit.register(self.flush)

    def add(self, action: str, user: User | None, job_id: int | None, ip: str | None, detail: dict | None) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}; add it to db.audit.ACTIONS")
        row = {
            "at": utcnow(),
            "user_id": user.id if user is not None else None,
            "username": user.username if user is not None else SYSTEM_ACTOR,
            "action": action,
            "job_id": job_id,
            "ip": ip,
            "detail": detail or None,
        }
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= MAX_ROWS
            if self._flusher_pid != os.getpid() or self._flusher is None or not self._flusher.is_alive():
                self._flusher_pid = os.getpid()
                self._flusher = threading.Thread(target=self._run, name="audit-flush", daemon=True)
                self._flusher.start()
        if full:
            self._wake.set()

    def _run(self) -> None:
        """Flush every FLUSH_EVERY_S seconds; end after IDLE_ROUNDS empty rounds (the next read starts another)."""
        idle = 0
        while idle < IDLE_ROUNDS:
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            idle = 0 if self.flush() or self._rows else idle + 1
        with self._lock:
            self._flusher = None  # the next add() starts another
            if self._rows:  # a row came in as this thread was ending: hand it to a new one
                self._flusher = threading.Thread(target=self._run, name="audit-flush", daemon=True)
                self._flusher.start()

    def flush(self) -> int:
        """Write every buffered row now, in one statement; returns how many were written."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with self.sessions() as session:
                session.execute(insert(AuditEvent), rows)
                session.commit()
        except SQLAlchemyError as error:
            with self._lock:
                kept = rows + self._rows
                self._rows = kept[-KEEP_AT_MOST:]
            dropped = len(kept) - KEEP_AT_MOST
            logger.error("could not write %d audit rows (kept for the next try): %s", len(rows), error)
            if dropped > 0:
                logger.error("dropped %d audit rows: the database has been unreachable for too long", dropped)
            return 0
        return len(rows)
