"""Logging in and out, CSRF on forms and on cookie-authenticated API calls, API tokens."""

from __future__ import annotations

import re

from tests.web_fixtures import PASSWORD, png_bytes, upload


def test_pages_require_login(web_client):
    for path in ("/jobs", "/jobs/1", "/upload", "/account/tokens", "/jobs/1/results.csv", "/thumbnails/1.png"):
        response = web_client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next=")


def test_root_redirects_to_history(web_client):
    assert web_client.get("/").headers["Location"] == "/jobs"


def test_login_and_logout(web_client, web_auth):
    response = web_auth.login("alice")
    assert response.status_code == 302 and response.headers["Location"] == "/jobs"
    page = web_client.get("/jobs")
    assert page.status_code == 200 and "alice" in page.get_data(as_text=True)
    assert web_auth.logout().status_code == 302
    assert web_client.get("/jobs").status_code == 302


def test_login_rejects_wrong_password(web_client, web_auth):
    response = web_auth.login("alice", "wrong")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    assert web_client.get("/jobs").status_code == 302


def test_login_redirects_only_to_local_paths(web_client, web_auth):
    token = web_auth.csrf_token()
    data = {"username": "alice", "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"}
    assert web_client.post("/login", data=data).headers["Location"] == "/jobs"
    data["next"] = "/jobs/7?status=done"
    web_auth.logout()
    data["csrf_token"] = web_auth.csrf_token()
    assert web_client.post("/login", data=data).headers["Location"] == "/jobs/7?status=done"


def test_forms_enforce_csrf(web_client, web_auth):
    response = web_client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    web_auth.login("alice")
    assert web_client.post("/account/tokens", data={"name": "x"}).status_code == 400
    assert web_client.post("/logout").status_code == 400


def test_cookie_api_calls_need_the_csrf_header(web_client, web_auth):
    web_auth.login("alice")
    assert web_client.get("/api/v1/jobs").status_code == 200  # reads need no token
    refused = web_client.post("/api/v1/jobs", data={"open": "true"})
    assert refused.status_code == 400 and "X-CSRFToken" in refused.get_json()["message"]
    token = web_auth.csrf_token("/upload")
    created = web_client.post("/api/v1/jobs", data={"open": "true"}, headers={"X-CSRFToken": token})
    assert created.status_code == 201


def test_api_requires_a_valid_token(web_client):
    missing = web_client.get("/api/v1/jobs")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.get_json() == {"error": "Unauthorized", "message": missing.get_json()["message"], "status": 401}
    assert web_client.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert web_client.get("/api/v1/jobs", headers={"Authorization": "Basic abc"}).status_code == 401
    assert web_client.get("/api/v1/healthz").status_code == 200  # liveness needs no credentials


def test_token_api_needs_no_csrf(web_client, web_token):
    data = {"files": [upload("a.png", png_bytes())]}
    assert web_client.post("/api/v1/jobs", data=data, headers=web_token("alice")).status_code == 201


def test_create_and_revoke_token(web_client, web_auth):
    web_auth.login("alice")
    page = web_client.post("/account/tokens", data={"name": "pacs", "csrf_token": web_auth.csrf_token("/upload")})
    assert page.status_code == 201
    token = re.search(r'<pre class="token" id="new-token">([^<]+)</pre>', page.get_data(as_text=True)).group(1)
    headers = {"Authorization": f"Bearer {token}"}
    assert web_client.get("/api/v1/jobs", headers=headers).status_code == 200

    listing = web_client.get("/account/tokens").get_data(as_text=True)
    assert "pacs" in listing and token not in listing  # shown once only
    token_id = re.search(r"/account/tokens/(\d+)/revoke", listing).group(1)
    revoked = web_client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": web_auth.csrf_token("/upload")})
    assert revoked.status_code == 302
    web_auth.logout()
    assert web_client.get("/api/v1/jobs", headers=headers).status_code == 401


def test_cannot_revoke_another_users_token(web_client, web_auth, web_token, web_db):
    web_token("bob")
    web_auth.login("alice")
    response = web_client.post("/account/tokens/1/revoke", data={"csrf_token": web_auth.csrf_token("/upload")})
    assert response.status_code == 404


def test_no_api_token_starts_like_a_command_line_option(web_db):
    """A URL-safe token may start with "-", which `radbatch ... --token -x...` would read as an option."""
    from db.models import User
    from db.session import session_scope
    from db.users import add_token

    with session_scope(web_db) as session:
        user = session.query(User).filter_by(username="alice").one()
        tokens = [add_token(session, user, name=f"t{n}") for n in range(200)]
    assert not [token for token in tokens if token.startswith("-")]
