"""Idempotency-Key on uploads (a retry creates nothing, gets the first response) and resuming uploads by SHA-256."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from db.models import IdempotencyKey, Image, Job
from db.session import session_scope
from tests.web_fixtures import png_bytes, queued_batches, upload


def counts(web_db) -> tuple[int, int]:
    with session_scope(web_db) as session:
        return session.scalar(select(func.count(Job.id))), session.scalar(select(func.count(Image.id)))


def stored_files(web_settings) -> list[str]:
    return sorted(path.name for path in web_settings.upload_dir.iterdir())


def chunk(values=(1, 2, 3)) -> list:
    return [upload(f"study/{v}.png", png_bytes(value=v)) for v in values]


def test_a_retried_chunk_with_the_same_key_creates_nothing_and_gets_the_first_response(
    web_client, web_token, web_db, web_settings, web_redis
) -> None:
    headers = web_token("alice")
    created = web_client.post(
        "/api/v1/jobs", data={"open": "true", "name": "chunks"}, headers=headers | {"Idempotency-Key": "create-1"}
    )
    assert created.status_code == 201
    again = web_client.post(
        "/api/v1/jobs", data={"open": "true", "name": "chunks"}, headers=headers | {"Idempotency-Key": "create-1"}
    )
    assert (again.status_code, again.get_json(), again.headers["Location"]) == (
        201,
        created.get_json(),
        created.headers["Location"],
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    job_id = created.get_json()["id"]

    key = headers | {"Idempotency-Key": "1b0e7c3e-2f55-4c55-9a63-5d8a8f0d6c11"}
    first = web_client.post(f"/api/v1/jobs/{job_id}/files", data={"files": chunk()}, headers=key)
    assert first.status_code == 200 and first.get_json()["added"] == 3
    before = (counts(web_db), stored_files(web_settings), queued_batches(web_redis))
    retry = web_client.post(f"/api/v1/jobs/{job_id}/files", data={"files": chunk()}, headers=key)
    assert (retry.status_code, retry.get_json()) == (200, first.get_json())
    assert (counts(web_db), stored_files(web_settings), queued_batches(web_redis)) == before == ((1, 3), *before[1:])

    web_client.post(f"/api/v1/jobs/{job_id}/close", headers=headers)
    late = web_client.post(f"/api/v1/jobs/{job_id}/files", data={"files": chunk()}, headers=key)
    assert late.status_code == 200  # a retry that arrives after the close still gets its first answer

    other = web_client.post(f"/api/v1/jobs/{job_id}/files", data={"files": chunk((4, 5))}, headers=key)
    assert other.status_code == 422 and "already used for a different request" in other.get_json()["message"]
    assert counts(web_db) == (1, 3)


def test_keys_belong_to_their_user_and_must_be_sane(web_client, web_token, web_db, web_redis) -> None:
    alice, bob = web_token("alice"), web_token("bob")
    for headers in (alice, bob):  # the same key for two users: two jobs
        response = web_client.post(
            "/api/v1/jobs", data={"files": chunk((1,))}, headers=headers | {"Idempotency-Key": "k"}
        )
        assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert counts(web_db) == (2, 2)
    for bad in ("", " ", "x" * 256, "caf\u00e9"):
        response = web_client.post("/api/v1/jobs", data={"open": "true"}, headers=alice | {"Idempotency-Key": bad})
        assert response.status_code == 400 and "Idempotency-Key" in response.get_json()["message"]
    without = [web_client.post("/api/v1/jobs", data={"files": chunk((1,))}, headers=alice) for _ in range(2)]
    assert [r.status_code for r in without] == [201, 201] and counts(web_db) == (4, 4)  # no key: no protection
    with session_scope(web_db) as session:
        assert session.scalar(select(func.count(IdempotencyKey.id))) == 2


def test_stored_files_carry_their_sha256_so_a_client_can_resume(web_client, web_token, web_redis) -> None:
    headers = web_token("alice")
    data = {v: png_bytes(value=v) for v in (10, 20, 30)}
    job = web_client.post(
        "/api/v1/jobs",
        data={"open": "true", "files": [upload(f"s/{v}.png", d) for v, d in data.items()]},
        headers=headers,
    ).get_json()
    digests = {v: hashlib.sha256(d).hexdigest() for v, d in data.items()}

    listed = web_client.get(f"/api/v1/jobs/{job['id']}/files", headers=headers).get_json()
    assert [(f["path"], f["sha256"]) for f in listed["files"]] == [(f"s/{v}.png", digests[v]) for v in data]
    assert listed["total"] == 3 and listed["pages"] == 1

    unknown = hashlib.sha256(b"not uploaded yet").hexdigest()
    query = f"{digests[20].upper()},{unknown}"
    found = web_client.get(f"/api/v1/jobs/{job['id']}/files?sha256={query}", headers=headers).get_json()
    assert [f["path"] for f in found["files"]] == ["s/20.png"] and found["total"] == 1

    bad = web_client.get(f"/api/v1/jobs/{job['id']}/files?sha256=abc", headers=headers)
    assert bad.status_code == 400 and "64 hexadecimal digits" in bad.get_json()["message"]
    other = web_client.get(f"/api/v1/jobs/{job['id']}/files", headers=web_token("bob"))
    assert other.status_code == 404


def test_a_purged_jobs_key_is_gone_with_it(web_client, web_token, web_db) -> None:
    """Replaying a key after a purge made a new job, not the purged one and its old webhook secret."""
    headers = web_token("alice") | {"Idempotency-Key": "purged-1"}
    form = {"files": chunk((7,)), "webhook_url": "https://hooks.example.org/h"}
    first = web_client.post("/api/v1/jobs", data=form, headers=headers).get_json()
    with session_scope(web_db) as session:
        assert session.scalar(select(IdempotencyKey.job_id).where(IdempotencyKey.key == "purged-1")) == first["id"]
    assert web_client.delete(f"/api/v1/jobs/{first['id']}?purge=true", headers=headers).status_code == 200
    with session_scope(web_db) as session:
        assert session.scalar(select(func.count(IdempotencyKey.id))) == 0
    again = web_client.post("/api/v1/jobs", data={**form, "files": chunk((7,))}, headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] != first["id"]
    assert again.get_json()["webhook"]["secret"] != first["webhook"]["secret"]
