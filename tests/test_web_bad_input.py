"""Hostile and odd input to the API (issue 10, "Other bad input"): every case is a clear 4xx or a clean row,
never a 500, and a request that fails leaves none of its files behind. Runs on SQLite and on PostgreSQL,
which refuses NUL bytes and 32-bit overflows that SQLite lets through."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import func, select, text

from db.models import Image, Job
from db.session import session_scope
from tests.stack import migrated_database, user_with_token
from tests.web_fixtures import png_bytes, upload
from web import create_app

HUGE = 9223372036854775807


@pytest.fixture(params=["sqlite", "postgresql"])
def any_app(request: pytest.FixtureRequest, web_settings, web_redis) -> Iterator[tuple[Flask, dict[str, str]]]:
    """The app on a migrated SQLite file or a fresh PostgreSQL database, and a Bearer header for alice."""
    from dataclasses import replace

    with migrated_database(request.param, web_settings.home) as url:
        app = create_app({"SETTINGS": replace(web_settings, database_url=url), "TESTING": True})
        app.config["PROPAGATE_EXCEPTIONS"] = False  # a failure must show up as the 500 a client would get
        token, _ = user_with_token(app.extensions["radbatch_sessions"], "alice", "pw")
        yield app, {"Authorization": f"Bearer {token}"}
        app.extensions["radbatch_engine"].dispose()


def stored_files(app: Flask) -> list[str]:
    folder = app.config["SETTINGS"].upload_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def image_count(app: Flask) -> int:
    with session_scope(app.extensions["radbatch_sessions"]) as session:
        return session.scalar(select(func.count()).select_from(Image))


def test_nul_bytes_and_control_characters_are_stripped(any_app):
    app, headers = any_app
    client = app.test_client()
    data = {"name": "ward\x00 3\n", "paths": ["st\x00udy/a\x01.png", "study/\x7fb.png"]}
    data["files"] = [upload("a.png", png_bytes()), upload("b.png", png_bytes())]
    created = client.post("/api/v1/jobs", data=data, headers=headers)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["name"] == "ward 3"
    results = client.get(f"/api/v1/jobs/{created.get_json()['id']}/results", headers=headers).get_json()["results"]
    assert [row["path"] for row in results] == ["study/a.png", "study/b.png"]
    held_back = json.dumps([{"path": "big\x00/c.png", "size": 3 * 2**30}, {"path": "\ud800d.png", "size": 2**40}])
    added = client.post("/api/v1/jobs", data={"too_large": held_back, "name": "x"}, headers=headers)
    assert added.status_code == 201, added.get_json()  # 3 GB and 1 TB overflowed PostgreSQL's 32-bit column
    rows = client.get(f"/api/v1/jobs/{added.get_json()['id']}/results", headers=headers).get_json()["results"]
    assert [row["path"] for row in rows] == ["big/c.png", "d.png"]
    assert rows[0]["error"].startswith("file too large (3072.0 MB")


def test_too_large_entries_are_capped_and_checked(web_app, web_client, web_token):
    headers = web_token("alice")
    web_app.config["MAX_FORM_PARTS"] = 10  # the same rule as the real 5,000, with a small request
    ok = json.dumps([{"path": f"{i}.png", "size": 2**30} for i in range(8)])
    files = [upload("a.png", png_bytes())]
    assert web_client.post("/api/v1/jobs", data={"files": files, "too_large": ok}, headers=headers).status_code == 201
    too_many = json.dumps([{"path": f"{i}.png", "size": 2**30} for i in range(10)])
    files = [upload("a.png", png_bytes())]
    refused = web_client.post("/api/v1/jobs", data={"files": files, "too_large": too_many}, headers=headers)
    assert refused.status_code == 400 and "at most 10 files" in refused.get_json()["message"]
    for bad in (
        [{"path": "a.png", "size": 1e30}],
        [{"path": "a.png", "size": -1}],
        [{"path": "a.png", "size": "9"}],
        [{"path": "a.png", "size": True}],
        [{"path": 7, "size": 1}],
        [["a.png", 1]],
        {"path": "a.png"},
        "x",
    ):
        response = web_client.post("/api/v1/jobs", data={"too_large": json.dumps(bad)}, headers=headers)
        assert response.status_code == 400 and "too_large" in response.get_json()["message"], bad
    assert web_client.post("/api/v1/jobs", data={"too_large": "[1e30"}, headers=headers).status_code == 400


def test_huge_page_numbers_and_ids_are_4xx(any_app):
    app, headers = any_app
    client = app.test_client()
    created = client.post("/api/v1/jobs", data={"files": [upload("a.png", png_bytes())]}, headers=headers)
    job_id = created.get_json()["id"]
    for path in (
        f"/api/v1/jobs?page={HUGE}",
        f"/api/v1/jobs/{job_id}/results?page={HUGE}",
        f"/api/v1/jobs?per_page={HUGE}",
        f"/api/v1/jobs?page={'9' * 5000}",
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 400 and "page" in response.get_json()["message"], path
    assert client.get("/api/v1/jobs?page=1000000", headers=headers).get_json()["jobs"] == []  # past the end: empty
    for path in (f"/api/v1/jobs/{HUGE}", f"/api/v1/jobs/{HUGE * 10}/results", "/api/v1/jobs/2147483648"):
        assert client.get(path, headers=headers).status_code == 404, path


def test_too_many_form_parts_says_so(web_client, web_token):
    data = {"files": [upload("a.png", png_bytes())], "paths": [f"{i}.png" for i in range(5000)]}
    response = web_client.post("/api/v1/jobs", data=data, headers=web_token("alice"))
    message = response.get_json()["message"]
    assert response.status_code == 413 and "more than 5000 form parts" in message and "body larger" not in message


REFUSALS = {
    # Fails while the rows are flushed, inside add_files.
    "insert": "CREATE TRIGGER refuse BEFORE INSERT ON images WHEN NEW.path LIKE '%boom%' "
    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    # Fails at the view's commit, after every file is stored and its row flushed.
    "commit": "CREATE TRIGGER refuse BEFORE UPDATE OF total ON jobs WHEN NEW.total > 2 "
    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
}


@pytest.mark.parametrize("where", sorted(REFUSALS))
def test_a_failed_transaction_leaves_no_stored_files(web_app, web_token, where):
    web_app.config["PROPAGATE_EXCEPTIONS"] = False
    client, headers = web_app.test_client(), web_token("alice")
    job_id = client.post("/api/v1/jobs", data={"open": "true"}, headers=headers).get_json()["id"]
    with web_app.extensions["radbatch_engine"].begin() as connection:
        connection.execute(text(REFUSALS[where]))
    paths = ["a.png", "b.png", "boom.png"]
    files = [upload(path, png_bytes()) for path in paths]
    response = client.post(f"/api/v1/jobs/{job_id}/files", data={"files": files, "paths": paths}, headers=headers)
    assert response.status_code == 500 and response.get_json()["message"].startswith("internal server error")
    assert stored_files(web_app) == [] and image_count(web_app) == 0
    with web_app.extensions["radbatch_engine"].begin() as connection:
        connection.execute(text("DROP TRIGGER refuse"))
    again = {"files": [upload("a.png", png_bytes())]}
    retried = client.post(f"/api/v1/jobs/{job_id}/files", data=again, headers=headers)
    assert retried.status_code == 200 and len(stored_files(web_app)) == 1 and image_count(web_app) == 1
    with session_scope(web_app.extensions["radbatch_sessions"]) as session:
        assert session.get(Job, job_id).total == 1
