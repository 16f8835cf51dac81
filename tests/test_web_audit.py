"""The audit log: a row for each action on a job (by token or portal session), readable by administrators only,
with filters and pages, keeping no paths or job names, and outliving the job."""

from __future__ import annotations

import io
import json

from tests.sitetools_helpers import create_job
from tests.web_fixtures import png_bytes, upload

SECRET_NAMES = ("Doe^Jane", "ward7/Doe_Jane.png")


def test_each_action_leaves_one_audit_row_and_only_admins_read_them(web_client, web_auth, web_token):
    alice = web_token("alice")
    job_id = create_job(web_client, alice, [SECRET_NAMES[1]], name=SECRET_NAMES[0], open="true")
    web_client.post(f"/api/v1/jobs/{job_id}/files", data={"files": [upload("ward7/b.png", png_bytes())]}, headers=alice)
    web_client.post(f"/api/v1/jobs/{job_id}/close", headers=alice)
    web_client.get(f"/api/v1/jobs/{job_id}", headers=alice)  # a status poll: not recorded
    web_client.get(f"/api/v1/jobs/{job_id}/results", headers=alice)
    labels = {"file": (io.BytesIO(b"path,label\nb.png,disease\n"), "labels.csv")}
    web_client.post(f"/api/v1/jobs/{job_id}/labels", data=labels, headers=alice)
    web_client.get(f"/api/v1/jobs/{job_id}/evaluation", headers=alice)
    web_client.get(f"/api/v1/jobs/{job_id}/results", headers=web_token("bob"))  # 404: not recorded
    web_auth.login("alice")
    web_client.get(f"/jobs/{job_id}")
    web_client.get(f"/jobs/{job_id}/rows")  # the live page's refresh: not recorded
    web_client.get(f"/jobs/{job_id}/results.csv")
    web_client.delete(f"/api/v1/jobs/{job_id}", headers=alice)
    purged = create_job(web_client, alice, ["p/a.png"])
    web_client.delete(f"/api/v1/jobs/{purged}?purge=true", headers=alice)

    assert web_client.get("/api/v1/audit", headers=alice).status_code == 403
    assert web_client.get("/admin/audit").status_code == 403
    root = web_token("root")
    body = web_client.get(f"/api/v1/audit?job={job_id}&per_page=1000", headers=root).get_json()
    actions = [event["action"] for event in reversed(body["events"])]
    assert actions == [
        "job.create",
        "job.add_files",
        "job.close",
        "results.view",
        "labels.upload",
        "evaluation.view",
        "job.view",
        "results.export",
        "job.cancel",
    ]
    first = body["events"][-1]
    assert (first["user"], first["ip"], first["detail"]) == ("alice", "127.0.0.1", {"files": 1})
    assert all(event["at"].endswith("+00:00") for event in body["events"])
    assert not any(secret in json.dumps(body) for secret in SECRET_NAMES)  # no job names, paths or file names

    by_action = web_client.get("/api/v1/audit?action=job.purge", headers=root).get_json()
    assert [(e["job_id"], e["user"]) for e in by_action["events"]] == [(purged, "alice")]
    assert by_action["events"][0]["detail"] == {"images": 1, "files": 1, "cancelled_first": True}  # it was queued
    page = web_client.get("/api/v1/audit?user=alice&per_page=3&page=2", headers=root).get_json()
    assert (page["page"], page["per_page"], page["total"], len(page["events"])) == (2, 3, 11, 3)
    assert web_client.get("/api/v1/audit?user=nobody", headers=root).get_json()["total"] == 0
    assert web_client.get("/api/v1/audit?action=bogus", headers=root).status_code == 400
    assert web_client.get("/api/v1/audit?job=x", headers=root).status_code == 400

    web_auth.logout()
    web_auth.login("root")
    html = web_client.get(f"/admin/audit?job={purged}").get_data(as_text=True)
    assert "job.purge" in html and "job.create" in html and "127.0.0.1" in html and "Audit log" in html
    assert web_client.get("/jobs").get_data(as_text=True).count('href="/admin/audit"') == 1
