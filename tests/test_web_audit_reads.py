"""Every read of patient pixels or results leaves an audit row (user, job, image, time), written in bulk by the
buffered writer: counted here after reading each kind through the Flask test client on a real database."""

from __future__ import annotations

import io
import time

from sqlalchemy import func, select

from db.audit import AuditEvent
from db.audit_buffer import FLUSH_EVERY_S
from db.session import session_scope
from tests import services
from tests.dicom_network_helpers import write_dicom_folder
from tests.sitetools_helpers import image_ids, predict
from tests.web_fixtures import png_bytes


def _rows(web_db, action: str) -> list[tuple]:
    with session_scope(web_db) as session:
        query = select(AuditEvent.username, AuditEvent.job_id, AuditEvent.detail, AuditEvent.at)
        return list(session.execute(query.where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_each_read_of_patient_data_is_audited(web_app, web_client, web_auth, web_token, web_db, web_settings, tmp_path):
    alice = web_token("alice")
    (dicom,) = write_dicom_folder(tmp_path / "dicom", 1, studies=1).values()
    files = {"files": [(io.BytesIO(dicom.read_bytes()), "s/a.dcm")]}
    job_id = web_client.post("/api/v1/jobs", data=files, headers=alice).get_json()["id"]
    predict(web_db, job_id, {"s/a.dcm": (0.9, 0.8)})
    image_id = image_ids(web_db, job_id)["s/a.dcm"]
    web_settings.heatmap_dir.mkdir(exist_ok=True)
    (web_settings.heatmap_dir / f"{image_id}-cnn.png").write_bytes(png_bytes())
    web_settings.thumbnail_dir.mkdir(exist_ok=True)
    (web_settings.thumbnail_dir / f"{image_id}.png").write_bytes(png_bytes())
    before = time.time()
    reads = {
        f"/api/v1/images/{image_id}/image.png": "image.view",
        f"/api/v1/images/{image_id}/heatmap?model=cnn": "heatmap.view",
        f"/api/v1/images/{image_id}/sr.dcm": "report.view",
        f"/api/v1/jobs/{job_id}/results": "results.view",
        f"/api/v1/jobs/{job_id}/files": "files.view",
        f"/jobs/{job_id}/results.csv": "results.export",
        f"/thumbnails/{image_id}.png": "image.view",
    }
    for url in reads:
        with web_client.get(url, headers=alice) as response:  # closed: a file it streams is closed with it
            assert response.status_code == 200, url
    assert web_client.get(f"/api/v1/images/{image_id}/image.png", headers=web_token("bob")).status_code == 404
    # Written by the background flush, without anyone asking: 8 rows in all (two image views), bob's 404 not.
    expected = {"image.view": 2, "heatmap.view": 1, "report.view": 1, "results.view": 1, "files.view": 1}
    expected["results.export"] = 1

    def counted() -> dict[str, int] | None:
        found = {action: len(_rows(web_db, action)) for action in expected}
        return found if found == expected else None

    services.wait_for(counted, 10 * FLUSH_EVERY_S, "the buffered audit rows")
    for action in expected:
        for username, row_job, detail, at in _rows(web_db, action):
            assert (username, row_job) == ("alice", job_id) and at.timestamp() >= before - 1
            if action in ("image.view", "heatmap.view", "report.view"):
                assert detail["image"] == image_id
    assert _rows(web_db, "heatmap.view")[0][2] == {"image": image_id, "model": "cnn"}
    with session_scope(web_db) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.username == "bob")) == 0
