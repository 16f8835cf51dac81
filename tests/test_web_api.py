"""The REST API: job creation and file checks, queueing, chunked open jobs, results, history, isolation, cancel."""

from __future__ import annotations

import gc
import json

import pytest
from sqlalchemy import insert, select

from db.jobs import refresh_job
from db.models import Image, ImageStatus, Prediction
from db.session import session_scope
from tests.web_fixtures import png_bytes, queued_batches, upload

RESULT_KEYS = {"id", "filename", "path", "status", "error", "notes", "width", "height", "predictions", "findings"} | {
    "study_instance_uid",
    "accession_number",
    "view_position",
    "dicom",
}
JOB_KEYS = {"id", "name", "status", "total", "done", "failed", "created_at", "finished_at"}


def _post_job(client, headers, files, **form):
    return client.post("/api/v1/jobs", data={"files": files, **form}, headers=headers)


@pytest.fixture
def collect_garbage():
    """Werkzeug's test client spools a large request body to a temp file it never closes: collect it in teardown."""
    yield
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")
def test_create_job_stores_images_and_refuses_other_files(
    collect_garbage, web_client, web_token, web_settings, web_redis, web_db
):
    headers = web_token("alice")
    files = [
        upload("study1/sub/a.png", png_bytes()),
        upload("study1/b.JPEG", png_bytes(fmt="JPEG")),
        upload("study1/c.bmp", png_bytes(fmt="BMP")),
        upload("study1/d.tif", png_bytes(fmt="TIFF")),
        upload("study1/e.png", png_bytes()),
        upload("study1/notes.txt", b"hello"),
        upload("study1/scan.dcm", b"\0" * 128 + b"DICM" + b"\0" * 64),
        upload("study1/empty.png", b""),
        upload("study1/fake.png", b"GIF89a not really a png"),
        upload("study1/big.png", png_bytes() + b"\0" * (web_settings.max_file_mb * 2**20)),
    ]
    response = _post_job(web_client, headers, files)
    assert response.status_code == 201
    body = response.get_json()
    assert JOB_KEYS <= set(body)
    assert body["total"] == 10 and body["name"] == "study1" and body["status"] == "running"
    assert response.headers["Location"] == f"/api/v1/jobs/{body['id']}"

    results = web_client.get(f"/api/v1/jobs/{body['id']}/results", headers=headers).get_json()
    assert results["total"] == 10 and results["pages"] == 1
    rows = {row["path"]: row for row in results["results"]}
    assert all(set(row) == RESULT_KEYS for row in rows.values())
    assert rows["study1/sub/a.png"]["filename"] == "a.png"
    for path in ("study1/sub/a.png", "study1/b.JPEG", "study1/c.bmp", "study1/d.tif", "study1/e.png"):
        assert rows[path]["status"] == "queued" and rows[path]["error"] is None
    errors = {path: row["error"] for path, row in rows.items() if row["status"] == "failed"}
    assert errors["study1/notes.txt"].startswith("unsupported file type .txt")
    assert errors["study1/scan.dcm"].startswith("DICOM file without pixel data")
    assert errors["study1/empty.png"] == "empty file (0 bytes)"
    assert "not a PNG, JPEG, BMP or TIFF image" in errors["study1/fake.png"]
    assert errors["study1/big.png"].startswith("file too large")

    with session_scope(web_db) as session:
        images = session.scalars(select(Image).where(Image.stored_name.is_not(None))).all()
        stored = {image.path: image.stored_name for image in images}
    assert len(stored) == 5 and stored["study1/b.JPEG"].endswith(".jpg") and stored["study1/d.tif"].endswith(".tiff")
    assert sorted(p.name for p in web_settings.upload_dir.iterdir()) == sorted(stored.values())
    batches = queued_batches(web_redis)
    assert [len(batch) for batch in batches] == [4, 1]  # batch_size 4; ids only
    assert sorted(sum(batches, [])) == sorted(r["id"] for r in rows.values() if r["status"] == "queued")


def test_create_job_needs_files(web_client, web_token):
    response = web_client.post("/api/v1/jobs", data={"name": "x"}, headers=web_token("alice"))
    assert response.status_code == 400 and "files" in response.get_json()["message"]


def test_paths_field_overrides_part_names(web_client, web_token):
    headers = web_token("alice")
    data = {"files": [upload("a.png", png_bytes()), upload("a.png", png_bytes())], "paths": ["x/1/a.png", "x/2/a.png"]}
    job = web_client.post("/api/v1/jobs", data=data, headers=headers).get_json()
    results = web_client.get(f"/api/v1/jobs/{job['id']}/results", headers=headers).get_json()["results"]
    assert [row["path"] for row in results] == ["x/1/a.png", "x/2/a.png"]
    data = {"files": [upload("a.png", png_bytes())], "paths": ["1", "2"]}
    assert web_client.post("/api/v1/jobs", data=data, headers=headers).status_code == 400


def test_chunked_open_job(web_client, web_token, web_redis):
    headers = web_token("alice")
    created = web_client.post("/api/v1/jobs", data={"open": "true", "name": "big folder"}, headers=headers)
    assert created.status_code == 201
    job_id = created.get_json()["id"]
    assert created.get_json()["total"] == 0 and created.get_json()["is_open"] is True

    chunk = [upload(f"f/{i}.png", png_bytes()) for i in range(6)]
    added = web_client.post(f"/api/v1/jobs/{job_id}/files", data={"files": chunk}, headers=headers)
    assert added.status_code == 200 and added.get_json()["total"] == 6
    assert [len(b) for b in queued_batches(web_redis)] == [4]  # a full batch starts at once, 2 wait
    too_large = json.dumps([{"path": "f/huge.png", "size": 5 * 2**30}])
    more = {"files": [upload(f"f/{i}.png", png_bytes()) for i in range(6, 9)], "too_large": too_large}
    assert web_client.post(f"/api/v1/jobs/{job_id}/files", data=more, headers=headers).get_json()["total"] == 10
    assert [len(b) for b in queued_batches(web_redis)] == [4, 4]

    closed = web_client.post(f"/api/v1/jobs/{job_id}/close", headers=headers)
    assert closed.status_code == 200 and closed.get_json()["is_open"] is False
    assert [len(b) for b in queued_batches(web_redis)] == [4, 4, 1]
    summary = web_client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()
    assert (summary["total"], summary["failed"], summary["status"]) == (10, 1, "running")

    late = web_client.post(
        f"/api/v1/jobs/{job_id}/files", data={"files": [upload("g.png", png_bytes())]}, headers=headers
    )
    assert late.status_code == 409 and "closed" in late.get_json()["message"]
    assert web_client.post(f"/api/v1/jobs/{job_id}/close", headers=headers).status_code == 200  # retry is harmless
    assert len(queued_batches(web_redis)) == 3


def test_per_user_isolation_and_admin(web_client, web_token):
    alice, bob, root = web_token("alice"), web_token("bob"), web_token("root")
    job_id = _post_job(web_client, alice, [upload("a.png", png_bytes())]).get_json()["id"]
    _post_job(web_client, bob, [upload("b.png", png_bytes())])
    for method, path in [
        ("get", f"/api/v1/jobs/{job_id}"),
        ("get", f"/api/v1/jobs/{job_id}/results"),
        ("delete", f"/api/v1/jobs/{job_id}"),
        ("post", f"/api/v1/jobs/{job_id}/files"),
        ("post", f"/api/v1/jobs/{job_id}/close"),
    ]:
        response = getattr(web_client, method)(path, headers=bob)
        assert response.status_code == 404, (method, path)
        assert "not found" in response.get_json()["message"]
    assert [job["id"] for job in web_client.get("/api/v1/jobs", headers=bob).get_json()["jobs"]] != [job_id]
    assert web_client.get("/api/v1/jobs", headers=alice).get_json()["total"] == 1
    assert web_client.get("/api/v1/jobs", headers=root).get_json()["total"] == 2
    assert web_client.get(f"/api/v1/jobs/{job_id}", headers=root).status_code == 200


def test_cancel(web_client, web_token, web_db):
    headers = web_token("alice")
    job_id = _post_job(web_client, headers, [upload(f"{i}.png", png_bytes()) for i in range(3)]).get_json()["id"]
    response = web_client.delete(f"/api/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert response.get_json()["finished_at"] is not None
    statuses = {
        r["status"] for r in web_client.get(f"/api/v1/jobs/{job_id}/results", headers=headers).get_json()["results"]
    }
    assert statuses == {"cancelled"}
    assert web_client.post(f"/api/v1/jobs/{job_id}/close", headers=headers).status_code == 409
    added = web_client.post(
        f"/api/v1/jobs/{job_id}/files", data={"files": [upload("x.png", png_bytes())]}, headers=headers
    )
    assert added.status_code == 409 and "cancelled" in added.get_json()["message"]


def test_history_pagination_and_status_filter(web_client, web_token):
    headers = web_token("alice")
    ids = [_post_job(web_client, headers, [upload("a.png", png_bytes())]).get_json()["id"] for _ in range(5)]
    web_client.delete(f"/api/v1/jobs/{ids[0]}", headers=headers)
    page = web_client.get("/api/v1/jobs?per_page=2&page=1", headers=headers).get_json()
    assert [job["id"] for job in page["jobs"]] == ids[::-1][:2]  # newest first
    assert (page["total"], page["pages"], page["page"], page["per_page"]) == (5, 3, 1, 2)
    last = web_client.get("/api/v1/jobs?per_page=2&page=3", headers=headers).get_json()
    assert [job["id"] for job in last["jobs"]] == [ids[0]]
    cancelled = web_client.get("/api/v1/jobs?status=cancelled", headers=headers).get_json()
    assert [job["id"] for job in cancelled["jobs"]] == [ids[0]]
    for bad in ("status=nope", "per_page=0", "per_page=1001", "page=x"):
        response = web_client.get(f"/api/v1/jobs?{bad}", headers=headers)
        assert response.status_code == 400, bad
        assert response.get_json()["message"]


def _finish_with_predictions(web_db, job_id: int) -> None:
    """Act as the worker: give every queued image CNN, U-Net and ensemble predictions."""
    with session_scope(web_db) as session:
        images = session.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.id)).all()
        rows = []
        for i, image in enumerate(images):
            image.status = ImageStatus.done
            cnn, unet = 0.1 + 0.2 * i, 0.9 - 0.2 * i
            for name, p in (("cnn", cnn), ("unet", unet), ("ensemble", (cnn + unet) / 2)):
                label = "disease" if p >= 0.5 else "healthy"
                rows.append(
                    dict(
                        image_id=image.id,
                        model_name=name,
                        headline=name == "ensemble",  # as the worker marks the headline model's row
                        model_version="v1",
                        probability=p,
                        label=label,
                        threshold=0.5,
                    )
                )
        session.execute(insert(Prediction), rows)
        refresh_job(session, job_id)


def test_results_filters_sorting_and_pages(web_client, web_token, web_db):
    headers = web_token("alice")
    files = [upload(f"s/{name}.png", png_bytes()) for name in ("d", "b", "a", "c")]
    job_id = _post_job(web_client, headers, files).get_json()["id"]
    _finish_with_predictions(web_db, job_id)  # cnn 0.1,0.3,0.5,0.7; unet 0.9,0.7,0.5,0.3; ensemble 0.5 each

    def get(query: str) -> dict:
        response = web_client.get(f"/api/v1/jobs/{job_id}/results?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    first = get("per_page=3")
    assert (first["total"], first["pages"], len(first["results"])) == (4, 2, 3)
    prediction = first["results"][0]["predictions"]["cnn"]
    assert set(prediction) == {"probability", "label", "threshold", "prevalence", "model_version", "headline"}
    assert set(first["results"][0]["predictions"]) == {"cnn", "unet", "ensemble"}
    assert len(get("per_page=3&page=2")["results"]) == 1
    assert [r["path"] for r in get("sort=path")["results"]] == ["s/a.png", "s/b.png", "s/c.png", "s/d.png"]
    by_cnn = get("sort=probability&model=cnn&order=desc")["results"]
    assert [r["predictions"]["cnn"]["probability"] for r in by_cnn] == pytest.approx([0.7, 0.5, 0.3, 0.1])
    assert [r["path"] for r in get("label=disease&model=cnn")["results"]] == ["s/a.png", "s/c.png"]
    assert [r["path"] for r in get("disagree=true")["results"]] == ["s/d.png", "s/b.png", "s/c.png"]
    assert get("status=failed")["total"] == 0
    summary = web_client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()
    assert (summary["status"], summary["done"]) == ("done", 4) and summary["finished_at"].endswith("+00:00")
    for bad in ("label=maybe", "sort=size", "model=resnet", "status=odd", "disagree=perhaps"):
        assert web_client.get(f"/api/v1/jobs/{job_id}/results?{bad}", headers=headers).status_code == 400, bad


def test_too_large_request_is_413(web_app, web_client, web_token):
    web_app.config["MAX_CONTENT_LENGTH"] = 1000
    response = _post_job(web_client, web_token("alice"), [upload("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 5000)])
    assert response.status_code == 413 and "fewer or smaller files" in response.get_json()["message"]


def test_unknown_api_route_is_json_404(web_client, web_token):
    response = web_client.get("/api/v1/nope", headers=web_token("alice"))
    assert response.status_code == 404 and response.get_json()["status"] == 404


def test_healthz_and_readyz(web_client, web_redis):
    assert web_client.get("/api/v1/healthz").get_json() == {"status": "ok"}
    assert web_client.get("/healthz").get_json() == {"status": "ok"}
    not_ready = web_client.get("/readyz")
    assert not_ready.status_code == 503 and "no worker" in not_ready.get_json()["message"]
    heartbeat = {"hostname": "h", "pid": 1, "models": {"cnn": "v1", "unet": "v1"}, "loaded_at": "now"}
    web_redis.set("radbatch:worker:h:1", json.dumps(heartbeat), ex=60)
    ready = web_client.get("/api/v1/readyz")
    assert ready.status_code == 200 and ready.get_json()["workers"] == [heartbeat]


def test_readyz_reports_unreachable_redis(web_app, web_client):
    from dataclasses import replace

    web_app.config["SETTINGS"] = replace(web_app.config["SETTINGS"], redis_url="redis://127.0.0.1:1/0")
    response = web_client.get("/api/v1/readyz")
    assert response.status_code == 503 and "redis unreachable" in response.get_json()["message"]


def test_unreachable_queue_keeps_files_pending_and_close_retries(web_settings, web_app, web_token, web_redis):
    from dataclasses import replace

    from web import create_app

    down = create_app({"SETTINGS": replace(web_settings, redis_url="redis://127.0.0.1:1/0"), "TESTING": True})
    headers = web_token("alice")
    created = down.test_client().post("/api/v1/jobs", data={"files": [upload("a.png", png_bytes())]}, headers=headers)
    assert created.status_code == 201 and "unreachable" in created.get_json()["warning"]
    job_id = created.get_json()["id"]
    closed = down.test_client().post(f"/api/v1/jobs/{job_id}/close", headers=headers)
    assert closed.status_code == 503 and "close again" in closed.get_json()["message"]
    results = web_app.test_client().get(f"/api/v1/jobs/{job_id}/results", headers=headers).get_json()["results"]
    assert [row["status"] for row in results] == ["pending"]

    retried = web_app.test_client().post(f"/api/v1/jobs/{job_id}/close", headers=headers)  # Redis is back
    assert retried.status_code == 200 and retried.get_json()["status"] == "queued"
    assert queued_batches(web_redis) == [[results[0]["id"]]]
    down.extensions["radbatch_engine"].dispose()
