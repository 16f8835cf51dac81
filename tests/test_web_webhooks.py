"""Webhook settings on job creation: checked, stored with a secret, and due (a task on the notify queue) as soon as
the job finishes, even when it finishes in the request that created it. Flask test client, real Redis."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from broker import NOTIFY_QUEUE
from db.session import session_scope
from db.webhooks import JobWebhook
from tests.web_fixtures import png_bytes, upload


def _create(client, headers, **form):
    return client.post("/api/v1/jobs", data={"files": [upload("h/a.png", png_bytes())], **form}, headers=headers)


@pytest.mark.parametrize(
    "form, message",
    [
        ({"webhook_url": "ftp://example.org/x"}, "must start with http:// or https://"),
        ({"webhook_url": "http://"}, "must start with http:// or https:// and name a host"),
        ({"webhook_url": "https://exa mple.org/"}, "without spaces"),
        ({"webhook_url": "https://example.org:99999/"}, "not a valid URL"),
        ({"webhook_url": "https://example.org/", "webhook_secret": "short"}, "16 to 128 printable characters"),
        ({"webhook_secret": "a-long-enough-secret"}, "without webhook_url"),
        ({"webhook_url": "https://user:pw@hooks.example.org/"}, "must not carry credentials"),
        ({"webhook_url": "https://token@hooks.example.org/"}, "must not carry credentials"),
        ({"webhook_url": "http://127.0.0.1:6379/"}, "not a public address"),
        ({"webhook_url": "http://0.0.0.0:11112/"}, "not a public address"),
        ({"webhook_url": "http://[::1]:5000/"}, "not a public address"),
        ({"webhook_url": "http://[::ffff:127.0.0.1]/"}, "not a public address"),
        ({"webhook_url": "http://169.254.169.254/latest/meta-data/"}, "not a public address"),
        ({"webhook_url": "http://10.0.0.5/h"}, "not a public address"),
        ({"webhook_url": "http://224.0.0.1/h"}, "not a public address"),
        ({"webhook_url": "http://LocalHost.:9540/"}, "is this machine"),
    ],
)
def test_bad_webhook_settings_are_refused_and_store_nothing(web_client, web_token, web_settings, form, message):
    response = _create(web_client, web_token("alice"), **form)
    assert response.status_code == 400 and message in response.get_json()["message"]
    assert web_client.get("/api/v1/jobs", headers=web_token("alice")).get_json()["total"] == 0
    assert not list(web_settings.upload_dir.glob("*"))


def test_a_webhook_is_stored_with_its_secret_and_due_once_the_job_finishes(web_client, web_token, web_db, web_redis):
    headers = web_token("alice")
    web_redis.delete(NOTIFY_QUEUE)
    created = _create(web_client, headers, webhook_url="https://hooks.example.org/radbatch?x=1")
    assert created.status_code == 201
    webhook = created.get_json()["webhook"]
    assert webhook["url"] == "https://hooks.example.org/radbatch?x=1" and len(webhook["secret"]) == 64
    job_id = created.get_json()["id"]
    shown = web_client.get(f"/api/v1/jobs/{job_id}/webhook", headers=headers).get_json()
    assert shown["state"] == "waiting" and "secret" not in shown
    assert web_client.get(f"/api/v1/jobs/{job_id}/webhook", headers=web_token("bob")).status_code == 404
    assert web_redis.llen(NOTIFY_QUEUE) == 0

    web_client.delete(f"/api/v1/jobs/{job_id}", headers=headers)  # cancelled is finished too
    assert web_client.get(f"/api/v1/jobs/{job_id}/webhook", headers=headers).get_json()["state"] == "due"
    message = json.loads(web_redis.lpop(NOTIFY_QUEUE))
    assert message["headers"]["task"] == "radbatch.notify_job" and message["headers"]["argsrepr"] == f"[{job_id}]"

    chosen = "my-own-secret-0123456789"
    refused_only = web_client.post(
        "/api/v1/jobs",
        data={
            "files": [upload("h/notes.txt", b"text")],
            "webhook_url": "https://hooks.example.org/h",
            "webhook_secret": chosen,
        },
        headers=headers,
    ).get_json()
    assert refused_only["status"] == "failed" and refused_only["webhook"]["secret"] == chosen
    assert json.loads(web_redis.lpop(NOTIFY_QUEUE))["headers"]["argsrepr"] == f"[{refused_only['id']}]"
    with session_scope(web_db) as session:
        stored = session.scalar(select(JobWebhook).where(JobWebhook.job_id == refused_only["id"]))
        assert (stored.state.value, stored.secret, stored.attempts) == ("due", chosen, 0)
    no_hook = _create(web_client, headers).get_json()
    assert "webhook" not in no_hook
    assert web_client.get(f"/api/v1/jobs/{no_hook['id']}/webhook", headers=headers).status_code == 404
