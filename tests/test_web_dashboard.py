"""The dashboard: history, the job page and its filters, CSV export, thumbnails, and a 100,000-image job."""

from __future__ import annotations

import csv
import io
import time

import pytest
from sqlalchemy import insert, select

from db.models import Image, ImageStatus, Job, JobStatus, Prediction, User
from db.session import session_scope
from tests.web_fixtures import png_bytes, upload

N_IMAGES = 100_000


def _job(client, headers, names, **form) -> int:
    files = [upload(name, png_bytes()) for name in names]
    return client.post("/api/v1/jobs", data={"files": files, **form}, headers=headers).get_json()["id"]


def test_history_lists_own_jobs_newest_first(web_client, web_auth, web_token):
    first = _job(web_client, web_token("alice"), ["x/a.png"], name="first batch")
    second = _job(web_client, web_token("alice"), ["y/a.png", "y/b.txt"], name="second batch")
    _job(web_client, web_token("bob"), ["z/a.png"], name="bobs batch")
    web_auth.login("alice")
    page = web_client.get("/jobs").get_data(as_text=True)
    assert page.index("second batch") < page.index("first batch") and "bobs batch" not in page
    assert f'href="/jobs/{second}"' in page and f'href="/jobs/{first}"' in page
    web_client.delete(f"/api/v1/jobs/{first}", headers=web_token("alice"))
    cancelled = web_client.get("/jobs?status=cancelled").get_data(as_text=True)
    assert "first batch" in cancelled and "second batch" not in cancelled
    assert web_client.get("/jobs?status=bogus").status_code == 400


def test_admin_sees_all_jobs_with_owners(web_client, web_auth, web_token):
    job_id = _job(web_client, web_token("bob"), ["z/a.png"], name="bobs batch")
    web_auth.login("root")
    page = web_client.get("/jobs").get_data(as_text=True)
    assert "bobs batch" in page and "<td>bob</td>" in page
    assert web_client.get(f"/jobs/{job_id}").status_code == 200


def test_job_page_rows_filters_and_isolation(web_client, web_auth, web_token):
    job_id = _job(web_client, web_token("alice"), ["s/a.png", "s/notes.txt"], name="mine")
    web_auth.login("bob")
    assert web_client.get(f"/jobs/{job_id}").status_code == 404
    assert web_client.get(f"/jobs/{job_id}/results.csv").status_code == 404
    web_auth.logout()
    web_auth.login("alice")
    page = web_client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "s/a.png" in page and "s/notes.txt" in page and "unsupported file type .txt" in page
    assert '<td class="path" title="s/a.png">s/<wbr>a.png' in page  # a long path breaks at its slashes only
    failed = web_client.get(f"/jobs/{job_id}?status=failed").get_data(as_text=True)
    assert "s/notes.txt" in failed and "s/a.png" not in failed
    rows = web_client.get(f"/jobs/{job_id}/rows?status=failed&sort=path&order=desc")
    assert rows.status_code == 200 and "<html" not in rows.get_data(as_text=True)
    assert web_client.get(f"/jobs/{job_id}?sort=nonsense").status_code == 400


def test_cancel_from_the_dashboard_needs_csrf(web_client, web_auth, web_token):
    job_id = _job(web_client, web_token("alice"), ["s/a.png"])
    web_auth.login("alice")
    assert web_client.post(f"/jobs/{job_id}/cancel").status_code == 400
    token = web_auth.csrf_token(f"/jobs/{job_id}")
    assert web_client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token}).status_code == 302
    assert web_client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] == "cancelled"


def test_csv_export(web_client, web_auth, web_token, web_db):
    job_id = _job(web_client, web_token("alice"), ["s/a.png", "=cmd.png", "s/b.txt"], name="export me")
    with session_scope(web_db) as session:
        image_id = session.scalar(select(Image.id).where(Image.path == "s/a.png"))
        session.execute(
            insert(Prediction),
            [
                dict(image_id=image_id, model_name=m, model_version="v2", probability=p, label=lab, threshold=0.5)
                | dict(headline=m == "ensemble")  # the worker marks the headline model's row
                for m, p, lab in (("cnn", 0.8, "disease"), ("unet", 0.4, "healthy"), ("ensemble", 0.6, "disease"))
            ],
        )
    web_auth.login("alice")
    response = web_client.get(f"/jobs/{job_id}/results.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f"radbatch-job{job_id}-export-me.csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["path"] for row in rows] == ["s/a.png", "'=cmd.png", "s/b.txt"]
    assert rows[0]["cnn_probability"] == "0.8" and rows[0]["unet_label"] == "healthy"
    assert rows[0]["ensemble_model_version"] == "v2" and rows[2]["status"] == "failed"
    only_failed = web_client.get(f"/jobs/{job_id}/results.csv?status=failed").get_data(as_text=True)
    assert only_failed.count("\n") == 2


def test_thumbnails_are_auth_checked(web_client, web_auth, web_token, web_settings, web_db):
    job_id = _job(web_client, web_token("alice"), ["s/a.png", "s/b.png"])
    with session_scope(web_db) as session:
        first, second = session.scalars(select(Image.id).where(Image.job_id == job_id).order_by(Image.id)).all()
    web_settings.thumbnail_dir.mkdir(parents=True)
    (web_settings.thumbnail_dir / f"{first}.png").write_bytes(png_bytes((8, 8)))
    web_auth.login("alice")
    with web_client.get(f"/thumbnails/{first}.png") as real:
        assert real.status_code == 200 and real.mimetype == "image/png"
    placeholder = web_client.get(f"/thumbnails/{second}.png")
    assert placeholder.status_code == 200 and placeholder.mimetype == "image/svg+xml"
    web_auth.logout()
    web_auth.login("bob")
    assert web_client.get(f"/thumbnails/{first}.png").status_code == 404


def test_upload_portal_and_token_pages_render(web_client, web_auth):
    web_auth.login("alice")
    page = web_client.get("/upload").get_data(as_text=True)
    assert "webkitdirectory" in page and 'data-create-url="/api/v1/jobs"' in page and "upload.js" in page
    with web_client.get("/static/upload.js") as script:
        assert script.status_code == 200


@pytest.fixture
def big_job(web_db) -> int:
    """A finished job of 100,000 images with three predictions each, seeded with bulk core inserts."""
    started = time.perf_counter()
    with session_scope(web_db) as session:
        user_id = session.scalar(select(User.id).where(User.username == "alice"))
        job = Job(user_id=user_id, name="huge", status=JobStatus.done, total=N_IMAGES, done=N_IMAGES - 1000)
        job.failed = 1000
        session.add(job)
        session.flush()
        images = [
            dict(
                job_id=job.id,
                filename=f"{i}.png",
                path=f"study{i % 97}/{i}.png",
                stored_name=f"{i:032x}.png",
                status=ImageStatus.failed if i % 100 == 0 else ImageStatus.done,
                error="corrupt or truncated PNG file" if i % 100 == 0 else None,
            )
            for i in range(N_IMAGES)
        ]
        session.execute(insert(Image), images)
        first_id = session.scalar(select(Image.id).where(Image.job_id == job.id).order_by(Image.id).limit(1))
        predictions = []
        for i in range(N_IMAGES):
            if i % 100 == 0:
                continue
            cnn, unet = (i % 1000) / 1000, ((i * 7) % 1000) / 1000
            for name, p in (("cnn", cnn), ("unet", unet), ("ensemble", (cnn + unet) / 2)):
                predictions.append(
                    dict(
                        image_id=first_id + i,
                        model_name=name,
                        headline=name == "ensemble",
                        model_version="v1",
                        probability=p,
                        label="disease" if p >= 0.5 else "healthy",
                        threshold=0.5,
                    )
                )
        session.execute(insert(Prediction), predictions)
        job_id = job.id
    print(f"seeded {N_IMAGES} images in {time.perf_counter() - started:.1f}s")
    return job_id


def test_100k_image_job_page_uses_a_few_queries(web_client, web_auth, web_queries, big_job):
    web_auth.login("alice")
    views = [
        f"/jobs/{big_job}",
        f"/jobs/{big_job}?page=1500&per_page=50",
        f"/jobs/{big_job}?sort=probability&order=desc",
        f"/jobs/{big_job}?sort=path&page=3",
        f"/jobs/{big_job}?label=disease&model=cnn",
        f"/jobs/{big_job}?disagree=1&per_page=200",
        f"/jobs/{big_job}/rows?status=failed",
        f"/jobs/{big_job}?q=STUDY42/&per_page=250&sort=probability",
        f"/api/v1/jobs/{big_job}/results?per_page=1000&page=100",
        "/jobs",
    ]
    for view in views:
        web_queries.statements.clear()
        started = time.perf_counter()
        response = web_client.get(view)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, view
        audit_rows = [s for s in web_queries.statements if s.startswith("INSERT INTO audit_events")]
        reads = [s for s in web_queries.statements if s not in audit_rows]
        # user, job, count, page of images, their predictions, their findings (one query each, however long the
        # page); plus the audit row
        assert len(reads) <= 6 and len(audit_rows) <= 1, (view, web_queries.statements)
        print(f"{view}: {len(reads)} queries + {len(audit_rows)} audit row, {elapsed * 1000:.0f} ms")
    page = web_client.get(f"/jobs/{big_job}?page=1500&per_page=50").get_data(as_text=True)
    assert "Page 1500 of 2000" in page and page.count('class="prob ') >= 3 * 49
    api = web_client.get(f"/api/v1/jobs/{big_job}/results?per_page=1000&page=100").get_json()
    assert (api["total"], api["pages"], len(api["results"])) == (N_IMAGES, 100, 1000)
    assert all(len(row["predictions"]) == 3 for row in api["results"] if row["status"] == "done")
    found = web_client.get(f"/api/v1/jobs/{big_job}/results?q=study42/&per_page=1000").get_json()
    assert found["total"] == sum(1 for i in range(N_IMAGES) if i % 97 == 42)
    assert all(row["path"].startswith("study42/") for row in found["results"])


def test_the_job_page_and_csv_show_every_threshold_and_the_prevalence(web_client, web_auth, web_token, web_db):
    job_id = _job(web_client, web_token("alice"), ["s/a.png"], name="thresholds")
    served = {"cnn": (0.81, 0.693), "unet": (0.72, 0.663), "ensemble": (0.77, 0.678)}
    with session_scope(web_db) as session:
        image_id = session.scalar(select(Image.id).where(Image.job_id == job_id))
        session.execute(
            insert(Prediction),
            [
                dict(image_id=image_id, model_name=m, model_version="v3", probability=p, label="disease")
                | dict(threshold=t, prevalence=0.2, headline=m == "ensemble")
                for m, (p, t) in served.items()
            ],
        )
    web_auth.login("alice")
    page = web_client.get(f"/jobs/{job_id}").get_data(as_text=True)
    for name, (_, threshold) in served.items():
        assert f"≥&nbsp;{threshold:.3f}</span>" in page  # under each label, not only in a tooltip
        assert f"{name} {threshold:.3f}" in page  # in the line above the table
    assert '<span id="prevalence">0.200</span>' in page
    rows = list(csv.DictReader(io.StringIO(web_client.get(f"/jobs/{job_id}/results.csv").get_data(as_text=True))))
    assert [rows[0][f"{m}_threshold"] for m in served] == ["0.693", "0.663", "0.678"]
    assert {rows[0][f"{m}_prevalence"] for m in served} == {"0.2"}
    results = web_client.get(f"/api/v1/jobs/{job_id}/results").get_json()["results"]
    assert {p["prevalence"] for p in results[0]["predictions"].values()} == {0.2}
