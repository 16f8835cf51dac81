"""A third model and a shadow model, dropped in as data (an ONNX file and its card, `models.install`), seen everywhere
with no code change: the worker's predictions, the results JSON, the CSV columns, the filters, the SR, the evaluation,
GET /api/v1/models, the page and the viewer (Chromium). The shadow model runs on every image, is stored with its
version, shows nowhere to an ordinary user nor in the CSV or the SR, and is compared with the ensemble and promoted by
an admin, audited; the worker then serves it without a restart. One stack (SQLite) for the whole module.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from sqlalchemy import select

from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs
from db.shadow import ShadowPrediction
from db.users import add_token, create_user
from models.install import install
from models.preprocess import load_and_preprocess
from models.roles import change_role
from settings import Settings
from tests import services
from tests.catalogue_fixtures import card, expected_probability, model_folder
from tests.conftest import PIPELINE_IMAGES
from tests.dicom_corpus import image_dataset
from tests.stack import migrated_database, stack_env, user_with_token, worker_and_web

pytestmark = pytest.mark.e2e
SERVED = {"cnn", "unet", "third", "ensemble"}
LABELS = PIPELINE_IMAGES.parent / "labels.csv"
CSV = {"Content-Type": "text/csv"}


@dataclass
class CatalogueStack:
    base_url: str
    user: services.Api
    admin: services.Api
    metrics_port: str
    sessions: object
    job: dict
    rows: dict[str, dict]


def _dicom_of(png: Path) -> bytes:
    pixels = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(png).convert("L"))
    ds = image_dataset(pixels, 8)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _files() -> list[tuple[str, bytes]]:
    pngs = sorted(PIPELINE_IMAGES.glob("*.png"))
    return [(f"site/{p.name}", p.read_bytes()) for p in pngs] + [("site/study.dcm", _dicom_of(pngs[0]))]


def _labels_csv() -> str:
    rows = list(csv.DictReader(io.StringIO(LABELS.read_text())))
    lines = [f"site/{r['Image Index']},{'healthy' if r['Finding Labels'] == 'No Finding' else 'disease'}" for r in rows]
    return "path,label\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CatalogueStack]:
    home = tmp_path_factory.mktemp("catalogue-home")
    models_dir = home / "models"
    for name, role in (("third", "served"), ("shadowy", "shadow")):
        source = model_folder(home / "incoming" / name, name=name, version=f"{name}-1")
        install(source / "model.onnx", card(name=name, version=f"{name}-1"), models_dir)
        change_role(models_dir, name, role, "tests", f"{name}-1")
    redis_process, redis_url = services.start_redis(home / "redis")
    try:
        with migrated_database("sqlite", home) as database_url:
            make_dirs(Settings(home=home, database_url=database_url, secret_key="cat"))
            engine = make_engine(database_url)
            sessions = make_session_factory(engine)
            token, _ = user_with_token(sessions, "reader", "reader password")
            with session_scope(sessions) as session:
                admin_token = add_token(session, create_user(session, "boss", "boss password", is_admin=True))
            env = stack_env(home, database_url, redis_url, "cat")
            with worker_and_web(env, home / "logs", redis_url) as (_worker, base_url):
                user = services.Api(base_url, token)
                job = user.create_job(_files(), name="catalogue")
                user.wait_finished(job["id"])
                rows = {row["path"]: row for row in user.results(job["id"], per_page=100)}
                yield CatalogueStack(
                    base_url,
                    user,
                    services.Api(base_url, admin_token),
                    env["RADBATCH_WORKER_METRICS_PORT"],
                    sessions,
                    job,
                    rows,
                )
            engine.dispose()
    finally:
        services.stop_process(redis_process)


def test_the_worker_serves_the_third_model_and_stores_the_shadow_one_apart(stack: CatalogueStack) -> None:
    done = [row for row in stack.rows.values() if row["status"] == "done"]
    assert len(done) == len(stack.rows) == 25
    for row in done:
        assert set(row["predictions"]) == SERVED, row["path"]
        assert row["predictions"]["third"]["model_version"] == "third-1"
        assert [n for n, p in row["predictions"].items() if p["headline"]] == ["ensemble"]
    for path, row in stack.rows.items():  # what the graph says on the worker's own preprocessing
        if path.endswith(".png"):
            batch = load_and_preprocess(PIPELINE_IMAGES / Path(path).name, size=64, channels=1)[None]
            assert row["predictions"]["third"]["probability"] == pytest.approx(expected_probability(batch)[0], 1e-4)
    with session_scope(stack.sessions) as session:
        shadow = session.execute(select(ShadowPrediction.image_id, ShadowPrediction.model_version)).all()
    assert sorted(shadow) == sorted((row["id"], "shadowy-1") for row in done)
    metrics = requests.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
    assert 'radbatch_worker_batch_stage_seconds_count{stage="shadow"}' in metrics


def test_csv_filters_sr_and_evaluation_follow_the_catalogue(stack: CatalogueStack) -> None:
    api, job_id = stack.user, stack.job["id"]
    exported = api.http.get(f"{stack.base_url}/jobs/{job_id}/results.csv", timeout=60)
    header = next(csv.reader(io.StringIO(exported.text)))
    assert [c for c in header if c.endswith("_model_version")] == [
        "cnn_model_version",
        "unet_model_version",
        "third_model_version",
        "ensemble_model_version",
    ]
    assert "shadowy" not in exported.text
    diseased = [r for r in stack.rows.values() if r["predictions"]["third"]["label"] == "disease"]
    filtered = api.http.get(f"{api.base}/jobs/{job_id}/results", params={"model": "third", "label": "disease"})
    assert filtered.json()["total"] == len(diseased) > 0
    unknown = api.http.get(f"{api.base}/jobs/{job_id}/results", params={"model": "shadowy"})
    assert unknown.status_code == 400 and "third" in unknown.text
    report = api.http.get(f"{api.base}/images/{stack.rows['site/study.dcm']['id']}/sr.dcm", timeout=60)
    assert report.status_code == 200 and b"third-1" in report.content and b"shadowy" not in report.content
    stored = api.http.post(f"{api.base}/jobs/{job_id}/labels", data=_labels_csv(), headers=CSV)
    assert stored.status_code in (200, 201), stored.text
    evaluation = api.http.get(f"{api.base}/jobs/{job_id}/evaluation", timeout=120).json()
    assert set(evaluation["models"]) == SERVED  # (JSON objects' keys come sorted)
    assert evaluation["models"]["third"]["n"] == 24 and evaluation["models"]["third"]["auc"] is not None


def test_the_catalogue_lists_shadow_models_to_admins_only(stack: CatalogueStack) -> None:
    def names(api: services.Api) -> dict[str, str]:
        return {m["name"]: m["role"] for m in api.http.get(f"{api.base}/models").json()["models"]}

    assert "shadowy" not in names(stack.user) and names(stack.user)["third"] == "served"
    assert names(stack.admin)["shadowy"] == "shadow"
    refused = stack.user.http.get(f"{stack.user.base}/models/shadowy/comparison", params={"job": stack.job["id"]})
    assert refused.status_code == 403


def test_compare_then_promote_and_the_worker_serves_it_without_a_restart(stack: CatalogueStack) -> None:
    admin, job_id = stack.admin, stack.job["id"]
    labels = stack.user.http.post(f"{admin.base}/jobs/{job_id}/labels", data=_labels_csv(), headers=CSV)
    assert labels.status_code in (200, 201), labels.text  # the site's labels (again, if the test runs alone)
    found = admin.http.get(f"{admin.base}/models/shadowy/comparison", params={"job": job_id}).json()
    assert found["reference"] == "ensemble" and found["agreement"]["n"] == 25
    shadow = np.array([r["predictions"]["third"]["probability"] for r in stack.rows.values()])  # the same graph
    ensemble = np.array([r["predictions"]["ensemble"]["probability"] for r in stack.rows.values()])
    assert found["agreement"]["mean_abs_difference"] == pytest.approx(np.abs(shadow - ensemble).mean(), 1e-4)
    assert found["disagreements"]["count"] == len(found["disagreeing_images"])
    assert found["labelled"]["n"] == 24 and found["labelled"]["difference_ci95"] is not None
    unconfirmed = admin.http.post(f"{admin.base}/models/shadowy/role", json={"role": "served"})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    promoted = admin.http.post(f"{admin.base}/models/shadowy/role", json={"role": "served", "confirm": "shadowy"})
    assert promoted.status_code == 200 and promoted.json()["to_role"] == "served"
    events = admin.http.get(f"{admin.base}/audit", params={"action": "model.role"}).json()["events"]
    assert events[0]["user"] == "boss" and events[0]["detail"]["model"] == "shadowy"
    job = stack.user.create_job(_files()[:3], name="after promotion")
    stack.user.wait_finished(job["id"])
    assert all(set(r["predictions"]) == SERVED | {"shadowy"} for r in stack.user.results(job["id"]))
    demoted = admin.http.post(f"{admin.base}/models/shadowy/role", json={"role": "shadow"})
    assert demoted.status_code == 200


def _logged_in(chromium, base_url: str, username: str):
    context = chromium.new_context(base_url=base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(f"{username} password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/jobs")
    return context, page


def test_the_page_and_the_viewer_show_the_third_model_and_never_the_shadow(stack: CatalogueStack, chromium) -> None:
    from playwright.sync_api import expect

    job_id = stack.job["id"]
    context, page = _logged_in(chromium, stack.base_url, "reader")
    try:
        page.goto(f"/jobs/{job_id}?view=images")
        headers = page.locator("table.results thead th[data-model]").all_text_contents()
        assert headers == ["cnn", "unet", "third", "ensemble"]
        assert page.locator("select[name=model] option").all_text_contents() == headers
        assert "shadowy" not in page.content()
        page.locator("tr.viewable button.view").first.click()
        expect(page.locator("#viewer-predictions")).to_contain_text("third")
        assert page.locator("#viewer-predictions tr td:first-child").all_text_contents() == headers
        page.keyboard.press("Escape")
        page.locator("select[name=model]").select_option("third")
        page.locator("select[name=label]").select_option("disease")
        page.locator("form.filters button").first.click()
        diseased = sum(r["predictions"]["third"]["label"] == "disease" for r in stack.rows.values())
        expect(page.locator("table.results tbody tr.viewable")).to_have_count(diseased)
        assert page.goto("/admin/models").status == 403
    finally:
        context.close()
    context, page = _logged_in(chromium, stack.base_url, "boss")
    try:
        page.goto(f"/admin/models?model=shadowy&job={job_id}")
        expect(page.locator("tr[data-model=shadowy] td.role")).to_have_text("shadow")
        expect(page.locator("#agreement")).to_contain_text("Same label on")
        expect(page.locator("#aucs")).to_contain_text("paired bootstrap")
        row = page.locator("tr[data-model=shadowy]")
        row.locator("form.promote input[name=confirm]").fill("shadowy")
        row.locator("form.promote button").click()
        expect(page.locator("tr[data-model=shadowy] td.role")).to_have_text("served")
        page.locator("tr[data-model=shadowy] form.demote button").click()
        expect(page.locator("tr[data-model=shadowy] td.role")).to_have_text("shadow")
    finally:
        context.close()
