"""gunicorn's access log without the polls: health probes, the job page's 2-second status and table refreshes,
`radbatch status --wait`-style job polls and Prometheus scrapes. Every other request is logged as usual.

    gunicorn --access-logfile - --logger-class deploy.access_log.QuietPollsLogger 'web:create_app()'
"""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

POLLED_PATHS = re.compile(
    r"""^(?:
        (?:/api/v1)?/(?:healthz|readyz)   # liveness and readiness probes
        | /api/v1/jobs/\d+                # a job's status and counts (the live job page, the CLI's --wait)
        | /jobs/\d+/rows                  # the live job page's table, fetched when the counts change
        | /metrics                        # Prometheus scrapes
    )/?$""",
    re.VERBOSE,
)


def is_poll(method: str, path: str) -> bool:
    """Whether a request is one of the repeated reads the access log leaves out (the query string aside)."""
    return method in ("GET", "HEAD") and POLLED_PATHS.match(path.split("?", 1)[0]) is not None


class QuietPollsLogger(Logger):
    """gunicorn's logger, without an access-log line for polls."""

    def access(self, resp, req, environ, request_time) -> None:
        if is_poll(req.method, req.path):
            return
        super().access(resp, req, environ, request_time)
