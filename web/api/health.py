"""Liveness (no dependencies) and readiness (database, Redis, at least one worker with its models loaded)."""

from __future__ import annotations

import logging

import redis
from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from broker.heartbeat import list_ready_workers
from web.api import bp
from web.api.errors import error_response
from web.extensions import get_db, get_settings

logger = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    settings = get_settings()
    try:
        get_db().execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        logger.warning("readyz: database unreachable: %s", error)
        return error_response(503, f"database unreachable: {type(error).__name__}")
    url = settings.effective_redis_url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
        workers = list_ready_workers(url)
    except redis.RedisError as error:
        logger.warning("readyz: redis unreachable: %s", error)
        return error_response(503, f"redis unreachable at {url.split('@')[-1]}: {error}")
    if not workers:
        return error_response(503, "no worker has its models loaded yet; start one with `make run` or wait for it")
    return jsonify({"status": "ready", "database": "ok", "redis": "ok", "workers": workers})
