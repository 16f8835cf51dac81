"""The radbatch REST API over HTTP with a Bearer token: retries with backoff on network errors and 5xx answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

RETRY_STATUSES = frozenset({500, 502, 503, 504})
USER_AGENT = "radbatch-cli/0.1"


class ApiError(RuntimeError):
    """The server refused a request (4xx); `message` is the server's own explanation."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ServerUnavailable(RuntimeError):
    """The server could not be reached, or kept failing, after every retry."""


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)
    return str(body)


class Client:
    """One API base URL and token. `attempts` tries per request; the wait doubles from `backoff_s`, up to 30 s."""

    def __init__(
        self,
        url: str,
        token: str,
        attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 300.0,
        on_retry: Callable[[str], None] | None = None,
    ):
        self.root = url.rstrip("/")
        self.api = f"{self.root}/api/v1"
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.on_retry = on_retry or (lambda _message: None)
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT})

    def request(self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """Send the request, retrying on connection errors, timeouts and 5xx; raise ApiError on 4xx."""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.http.request(method, url, headers=headers, timeout=self.timeout_s, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = f"network error ({type(error).__name__}: {error})"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise ApiError(response.status_code, _message(response))
                problem = f"server answered {response.status_code} ({_message(response)})"
            if attempt == self.attempts:
                raise ServerUnavailable(f"{method} {url}: {problem}; gave up after {self.attempts} attempts")
            delay = min(self.backoff_s * 2 ** (attempt - 1), 30.0)
            self.on_retry(f"{method} {url}: {problem}; retrying in {delay:.0f} s ({attempt}/{self.attempts - 1})")
            time.sleep(delay)
        raise AssertionError("unreachable")

    def get_json(self, path: str, **params: Any) -> dict:
        return self.request("GET", f"{self.api}{path}", params=params).json()

    def post_json(self, path: str, data: dict | None = None, headers: dict[str, str] | None = None, **kwargs) -> dict:
        return self.request("POST", f"{self.api}{path}", data=data, headers=headers, **kwargs).json()

    def create_job(self, name: str, heatmaps: bool | None = None, priority: str = "normal") -> dict:
        """An open job: files are added in chunks, then it is closed. `heatmaps` None: the server's default."""
        data = {"name": name, "open": "true", "priority": priority}
        data |= {} if heatmaps is None else {"heatmaps": str(heatmaps).lower()}
        return self.post_json("/jobs", data=data)

    def add_files(self, job_id: int, parts: list[tuple[str, tuple[str, bytes, str]]], data: dict, key: str) -> dict:
        # Idempotency-Key: one per chunk, the same on every retry of it. Servers that honour it store a retried
        # chunk once even when the first attempt's answer was lost; older servers ignore the header.
        return self.post_json(f"/jobs/{job_id}/files", data=data, files=parts, headers={"Idempotency-Key": key})

    def close_job(self, job_id: int) -> dict:
        return self.post_json(f"/jobs/{job_id}/close")

    def job(self, job_id: int) -> dict:
        return self.get_json(f"/jobs/{job_id}")

    def _every(self, path: str, key: str, per_page: int = 1000, **params: str):
        """Every item of a paginated listing, page by page (the API's own pagination)."""
        page = 1
        while True:
            body = self.get_json(path, page=page, per_page=per_page, **params)
            yield from body[key]
            if page >= body["pages"]:
                return
            page += 1

    def results(self, job_id: int, **filters: str):
        """Every result row of the job."""
        return self._every(f"/jobs/{job_id}/results", "results", **filters)

    def stored_files(self, job_id: int):
        """Every file the job holds, with the SHA-256 of its stored bytes (null for a refused file)."""
        return self._every(f"/jobs/{job_id}/files", "files")

    def results_csv(self, job_id: int, **filters: str) -> requests.Response:
        """The dashboard's CSV export, streamed (it accepts the Bearer token too)."""
        return self.request("GET", f"{self.root}/jobs/{job_id}/results.csv", params=filters, stream=True)
