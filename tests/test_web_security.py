"""The web app's defences (issue 10, "Security"): redirects after login, login throttling in Redis, no user
enumeration by timing, revocable sessions, expiring CSRF tokens, security and caching headers, and templates
that work under the Content-Security-Policy."""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from db.models import User
from db.session import session_scope
from db.users import authenticate, set_password
from settings import Settings
from tests.web_fixtures import PASSWORD, WebAuth, png_bytes, upload
from web import create_app
from web.auth.views import safe_next
from web.security import LIMITER_KEY_PREFIX


def login_form(auth: WebAuth, username: str, password: str, **extra: str) -> dict[str, str]:
    return {"username": username, "password": password, "csrf_token": auth.csrf_token(), **extra}


OFF_SITE = [
    "/\t/evil.example",
    "/\n/evil.example",
    "//evil.example",
    "/\\evil.example",
    "https://evil.example/",
    " //evil.example",
    "javascript:alert(1)",
    "/jobs\r\nSet-Cookie: x=1",
    "jobs",
    "/\x00/evil.example",
]


def test_login_never_redirects_off_site(web_app, web_client, web_auth):
    # As the issue sent it: percent-encoded in the login page's query string, then posted back by the form.
    page = web_client.get("/login?next=/%09/evil.example").get_data(as_text=True)
    target = re.search(r'name="next" value="([^"]*)"', page).group(1)
    response = web_client.post("/login", data=login_form(web_auth, "alice", PASSWORD, next=target))
    assert response.status_code == 302 and response.headers["Location"] == "/jobs"
    newline = web_client.post("/login", data=login_form(web_auth, "alice", PASSWORD, next="/jobs\n/x"))
    assert newline.status_code == 302 and newline.headers["Location"] == "/jobs"  # was a 500
    with web_app.test_request_context():
        assert [safe_next(target) for target in OFF_SITE] == ["/jobs"] * len(OFF_SITE)
        assert safe_next("/jobs/7?status=done") == "/jobs/7?status=done"


def test_login_keeps_a_local_next(web_client, web_auth):
    response = web_client.post("/login", data=login_form(web_auth, "alice", PASSWORD, next="/jobs/7?status=done"))
    assert response.headers["Location"] == "/jobs/7?status=done"


@pytest.fixture
def strict_app(web_app, web_settings):
    """The app with low limits (the defaults: 10 failures per user name, 50 per address), same database and Redis."""
    strict = replace(web_settings, login_limit_per_user="3 per 15 minutes", login_limit_per_ip="5 per 15 minutes")
    app = create_app({"SETTINGS": strict, "TESTING": True})
    yield app
    app.extensions["radbatch_engine"].dispose()


def test_failed_logins_are_throttled_per_user_name_in_redis(strict_app, web_redis):
    client = strict_app.test_client()
    auth = WebAuth(client)

    def attempt(password: str, address: str, username: str = "alice") -> int:
        data = login_form(auth, username, password)
        return client.post("/login", data=data, environ_base={"REMOTE_ADDR": address}).status_code

    # Each from another address, so only the user-name limit (3 failures) can stop them.
    assert [attempt("wrong", "10.0.0.1"), attempt("wrong", "10.0.0.2")] == [401, 401]
    assert attempt(PASSWORD, "10.0.0.3") == 302  # a success is not counted
    auth.logout()
    assert attempt("wrong", "10.0.0.4", username="ali\x01ce ") == 401  # the same user to the form: counted as alice
    assert any(LIMITER_KEY_PREFIX in key.decode() for key in web_redis.scan_iter("LIMITS:*"))  # counted in Redis
    refused = client.post("/login", data=login_form(auth, "alice", PASSWORD), environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert refused.status_code == 429  # the right password, straight after the wrong ones
    assert "too many failed log-ins for this user name" in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) > 0
    assert client.get("/jobs").status_code == 302  # not logged in
    assert auth.login("bob").status_code == 302  # other users are not affected


def test_failed_logins_are_throttled_per_address(strict_app, web_token):
    client = strict_app.test_client()
    auth = WebAuth(client)
    for name in [f"nobody{i}" for i in range(5)]:  # different names: only the address limit (5) can stop them
        assert client.post("/login", data=login_form(auth, name, "wrong")).status_code == 401
    refused = client.post("/login", data=login_form(auth, "alice", PASSWORD))
    assert refused.status_code == 429 and "from your address" in refused.get_data(as_text=True)
    assert client.get("/api/v1/jobs", headers=web_token("alice")).status_code == 200  # tokens are not throttled
    elsewhere = {"REMOTE_ADDR": "10.1.1.1"}
    assert client.post("/login", data=login_form(auth, "alice", PASSWORD), environ_base=elsewhere).status_code == 302


def test_unknown_and_known_user_names_take_as_long(web_db):
    """An unknown name runs a hash check too; before, it answered ~40 times faster than a known one."""

    def timed(username: str) -> float:
        with session_scope(web_db) as session:
            started = time.perf_counter()
            assert authenticate(session, username, "wrong password") is None
            return time.perf_counter() - started

    timed("nobody")  # the dummy hash is made once, lazily
    known = statistics.median(timed("alice") for _ in range(3))
    unknown = statistics.median(timed("nobody") for _ in range(3))
    assert unknown > 0.5 * known, (known, unknown)


def test_logout_ends_every_session_of_the_user(web_app, web_client, web_auth):
    web_auth.login("alice")
    other_browser = web_app.test_client()
    WebAuth(other_browser).login("alice")
    stolen_cookie = web_client.get_cookie("session").value
    assert other_browser.get("/jobs").status_code == 200
    web_auth.logout()
    assert other_browser.get("/jobs").status_code == 302  # the other browser is logged out too
    replay = web_app.test_client()
    replay.set_cookie("session", stolen_cookie)
    assert replay.get("/jobs").status_code == 302  # and a copy of the old cookie is worthless
    assert replay.get("/api/v1/jobs").status_code == 401


def test_a_password_change_ends_every_session(web_client, web_auth, web_db):
    web_auth.login("alice")
    assert web_client.get("/jobs").status_code == 200
    with session_scope(web_db) as session:
        set_password(session.scalar(select(User).where(User.username == "alice")), "a new password")
    assert web_client.get("/jobs").status_code == 302
    assert web_auth.login("alice", "a new password").status_code == 302


def test_a_login_lasts_at_most_the_configured_hours_even_while_used(web_client, web_auth, web_settings):
    web_auth.login("alice")
    with web_client.session_transaction() as session:
        session["logged_in_at"] -= web_settings.session_hours * 3600 + 60
    assert web_client.get("/jobs").status_code == 302


def test_csrf_tokens_expire_and_the_portal_can_renew_them(web_app, web_client, web_auth):
    assert web_app.config["WTF_CSRF_TIME_LIMIT"] == 3600
    web_auth.login("alice")
    fresh = web_client.get("/csrf-token")
    assert fresh.status_code == 200 and fresh.headers["Cache-Control"] == "no-store"
    token = fresh.get_json()["csrf_token"]
    assert web_client.post("/api/v1/jobs", data={"open": "true"}, headers={"X-CSRFToken": token}).status_code == 201

    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 7200

    with web_client.session_transaction() as session:
        raw = session["csrf_token"]
    old = URLSafeTimedSerializer(web_app.config["SECRET_KEY"], salt="wtf-csrf-token", signer=TwoHoursAgo).dumps(raw)
    expired = web_client.post("/api/v1/jobs", data={"open": "true"}, headers={"X-CSRFToken": old})
    assert expired.status_code == 400 and "expired" in expired.get_json()["message"]
    web_auth.logout()
    assert web_client.get("/csrf-token").status_code == 401


def test_security_headers_on_pages_and_api(web_client, web_auth, web_token):
    web_auth.login("alice")
    for response in (web_client.get("/jobs"), web_client.get("/api/v1/jobs", headers=web_token("alice"))):
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in response.headers  # off by default, and never over plain HTTP
    cookie = web_client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure


def test_tls_settings_give_secure_cookies_and_hsts(web_app, web_settings):
    settings: Settings = replace(web_settings, secure_cookies=True, hsts_seconds=31536000, proxy_count=1)
    app = create_app({"SETTINGS": settings, "TESTING": True})
    client = app.test_client()
    behind_tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    response = client.get("/login", headers=behind_tls)
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    token = re.search(r'name="csrf-token" content="([^"]+)"', response.get_data(as_text=True)).group(1)
    data = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    logged_in = client.post("/login", data=data, headers=behind_tls | {"Referer": "https://localhost/login"})
    assert logged_in.status_code == 302
    assert "Secure" in logged_in.headers["Set-Cookie"] and "HttpOnly" in logged_in.headers["Set-Cookie"]
    app.extensions["radbatch_engine"].dispose()


def test_thumbnails_are_private(web_client, web_auth, web_token, web_settings):
    web_client.post("/api/v1/jobs", data={"files": [upload("a.png", png_bytes())]}, headers=web_token("alice"))
    web_settings.thumbnail_dir.mkdir(parents=True, exist_ok=True)
    (web_settings.thumbnail_dir / "1.png").write_bytes(png_bytes())  # the first image of a fresh database
    web_auth.login("alice")
    with web_client.get("/thumbnails/1.png") as response:  # closes the file it streams
        assert response.status_code == 200
        assert "private" in response.headers["Cache-Control"] and "public" not in response.headers["Cache-Control"]


class InlineFinder(HTMLParser):
    """Whatever a strict Content-Security-Policy blocks: inline scripts, on* handlers, style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names:
            self.blocked.append("<script> without src")
        if tag == "style":
            self.blocked.append("<style>")
        self.blocked += [f"<{tag} {name}=...>" for name in names if name == "style" or name.startswith("on")]


def test_every_page_works_under_the_content_security_policy(web_client, web_auth, web_token):
    job_id = web_client.post("/api/v1/jobs", data={"files": [upload("a.png", png_bytes())]}, headers=web_token("alice"))
    job_id = job_id.get_json()["id"]
    pages = ["/login"]
    web_auth.login("alice")
    pages += ["/jobs", f"/jobs/{job_id}", f"/jobs/{job_id}/rows", "/upload", "/account/tokens", "/jobs/999"]
    for path in pages:
        finder = InlineFinder()
        finder.feed(web_client.get(path).get_data(as_text=True))
        assert finder.blocked == [], path
