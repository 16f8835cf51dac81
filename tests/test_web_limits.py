"""Limits a single user cannot get around (Flask test client, real SQLite and Redis): open jobs and API tokens
per user, the nesting depth of `too_large`, label matching that stays linear in path depth, and the /metrics
token."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace

from ingest.labels import ImageIndex, match_rows, read_csv
from tests.web_fixtures import PASSWORD, png_bytes, upload
from web import create_app


def test_open_jobs_per_user_are_limited_with_a_429(web_app, web_client, web_token) -> None:
    web_app.config["SETTINGS"] = replace(web_app.config["SETTINGS"], max_open_jobs_per_user=3)
    alice, bob = web_token("alice"), web_token("bob")
    opened = [web_client.post("/api/v1/jobs", data={"open": "true"}, headers=alice) for _ in range(3)]
    assert [response.status_code for response in opened] == [201] * 3
    refused = web_client.post("/api/v1/jobs", data={"open": "true"}, headers=alice)
    assert refused.status_code == 429 and "3 open jobs" in refused.get_json()["message"]
    assert web_client.post("/api/v1/jobs", data={"open": "true"}, headers=bob).status_code == 201  # per user
    closed_job = web_client.post("/api/v1/jobs", data={"files": [upload("a.png", png_bytes())]}, headers=alice)
    assert closed_job.status_code == 201  # a job sent in one request is not open
    web_client.post(f"/api/v1/jobs/{opened[0].get_json()['id']}/close", headers=alice)
    assert web_client.post("/api/v1/jobs", data={"open": "true"}, headers=alice).status_code == 201


def test_api_tokens_per_user_are_limited_with_a_409(web_app, web_client, web_auth) -> None:
    web_app.config["SETTINGS"] = replace(web_app.config["SETTINGS"], max_tokens_per_user=2)
    web_auth.login("alice", PASSWORD)
    made = [
        web_client.post("/account/tokens", data={"name": f"t{n}", "csrf_token": web_auth.csrf_token("/account/tokens")})
        for n in range(3)
    ]
    assert [response.status_code for response in made] == [201, 201, 409]
    assert "revoke one you no longer use" in made[2].get_data(as_text=True)


def test_deeply_nested_too_large_is_a_clear_400(web_client, web_token) -> None:
    for raw in ("[" * 100_000 + "]" * 100_000, '[{"path": [[[[["x"]]]]], "size": 1}]'):
        response = web_client.post("/api/v1/jobs", data={"open": "true", "too_large": raw}, headers=web_token("alice"))
        assert (
            response.status_code == 400 and "nests arrays or objects more than 4 deep" in response.get_json()["message"]
        )
    strings = json.dumps([{"path": "a[[[[[[{{{{.png", "size": 2**40}])  # brackets inside strings do not count
    response = web_client.post("/api/v1/jobs", data={"open": "true", "too_large": strings}, headers=web_token("alice"))
    assert response.status_code == 201 and response.get_json()["failed"] == 1


def test_label_matching_holds_each_path_once_whatever_its_depth() -> None:
    """The issue's case (2,000 images 500 folders deep) at a tenth of its width: the old suffix table held every
    trailing part of every path (about 50 MB here, 500 MB in the issue); the index holds each path a few times."""
    deep = "/".join(["d"] * 500)
    images = [(n, f"{deep}/{n}.png") for n in range(200)]
    csv = "path,label\n" + "".join(f"{deep}/{n}.png,{'disease' if n % 2 else 'healthy'}\n" for n in range(200))
    columns, rows = read_csv(csv.encode())
    tracemalloc.start()
    index = ImageIndex(images)
    matched = match_rows(columns, rows, index)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [row.image_id for row in matched] == list(range(200))
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MB"
    index = ImageIndex([(1, "site/a/x.png"), (2, "site/b/x.png"), (3, "b/y.png")])
    assert index.find("a/x.png") == (1, None)  # the end of an image's path
    assert index.find("x.png")[1] == "matches 2 images; give more of the path"
    assert index.find("/mnt/site/b/x.png") == (2, None)  # ... or more than its path
    assert index.find("q/b/y.png") == (3, None)
    assert index.find("z.png")[0] is None


def test_metrics_can_require_a_token(web_settings, web_redis) -> None:
    app = create_app({"SETTINGS": replace(web_settings, metrics_token="scrape-secret"), "TESTING": True})
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert answer.status_code == 200 and b"radbatch_" in answer.data
    app.extensions["radbatch_engine"].dispose()
