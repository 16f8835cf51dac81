"""`worker.inference.predict_batch` called directly (no Celery): idempotency, bad files, cancelled jobs, recovery query.

Runs on SQLite and on a fresh PostgreSQL database, with the real trained models loaded in this process.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from broker.inflight import BrokerView
from db.findings import FindingPrediction
from db.models import Image, ImageStatus, Job, JobStatus, Prediction, utcnow
from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs
from db.users import create_user
from models.prevalence import PriorShift
from settings import Settings
from tests.conftest import PIPELINE_IMAGES, PIPELINE_ORIGINALS
from worker import inference, runtime
from worker.recovery import find_lost

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def loaded_models():
    return runtime.load_models(Settings())


@pytest.fixture
def env(e2e_database_url: str, tmp_path):
    settings = Settings(home=tmp_path, database_url=e2e_database_url, batch_size=8)
    make_dirs(settings)
    engine = make_engine(e2e_database_url)
    yield settings, make_session_factory(engine)
    engine.dispose()


def make_job(settings: Settings, sessions, files: dict[str, bytes | None], **job_fields) -> tuple[int, list[int]]:
    """A job with one queued image per entry; None means the stored file has gone missing."""
    with session_scope(sessions) as session:
        user = create_user(session, f"u{utcnow().timestamp()}", "pw")
        job = Job(user_id=user.id, name="direct", **job_fields)
        session.add(job)
        session.flush()
        for name, data in files.items():
            stored = f"{job.id}-{name}"
            if data is not None:
                (settings.upload_dir / stored).write_bytes(data)
            session.add(Image(job_id=job.id, filename=name, path=name, stored_name=stored, status=ImageStatus.queued))
        session.flush()
        return job.id, list(session.scalars(select(Image.id).where(Image.job_id == job.id).order_by(Image.id)))


def run(settings, sessions, models, ids):
    with session_scope(sessions) as session:
        return inference.predict_batch(session, ids, models.models, models.ensemble, settings, models.findings)


def test_running_a_batch_twice_writes_each_prediction_once(env, loaded_models) -> None:
    settings, sessions = env
    good = {p.name: p.read_bytes() for p in sorted(PIPELINE_IMAGES.glob("*.png"))[:5]}
    rgba = (PIPELINE_ORIGINALS / "00000773_001.png").read_bytes()
    files = {**good, "rgba.png": rgba, "truncated.png": rgba[:5000], "gone.png": None}
    job_id, ids = make_job(settings, sessions, files)

    first = run(settings, sessions, loaded_models, ids)
    second = run(settings, sessions, loaded_models, ids)
    assert (len(first.done), len(first.failed)) == (6, 2)
    assert (second.done, second.failed, sorted(second.skipped)) == ([], [], ids)

    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) >= 18
        per_image = dict(
            session.execute(
                select(Prediction.image_id, func.count())
                .where(Prediction.image_id.in_(ids))
                .group_by(Prediction.image_id)
            ).all()
        )
        assert sorted(per_image.values()) == [3] * 6
        findings = dict(
            session.execute(
                select(FindingPrediction.image_id, func.count())
                .where(FindingPrediction.image_id.in_(ids))
                .group_by(FindingPrediction.image_id)
            ).all()
        )
        assert loaded_models.findings is not None
        assert (
            sorted(findings.values()) == [len(loaded_models.findings.findings)] * 6
        )  # every head; none for failed files
        images = {image.path: image for image in session.scalars(select(Image).where(Image.job_id == job_id))}
        assert images["truncated.png"].error.startswith("corrupt or truncated PNG file")
        assert images["gone.png"].error == "the uploaded file is missing from the server's store"
        assert (images["rgba.png"].status, images["rgba.png"].mode) == (ImageStatus.done, "RGBA")
        job = session.get(Job, job_id)
        counts = dict(
            session.execute(
                select(Image.status, func.count()).where(Image.job_id == job_id).group_by(Image.status)
            ).all()
        )
        assert (job.total, job.done, job.failed) == (len(ids), counts[ImageStatus.done], counts[ImageStatus.failed])
        assert job.status == JobStatus.done and job.finished_at is not None


def test_an_image_put_back_in_the_queue_never_gets_a_second_row(env, loaded_models) -> None:
    settings, sessions = env
    job_id, ids = make_job(
        settings, sessions, {p.name: p.read_bytes() for p in sorted(PIPELINE_IMAGES.glob("*.png"))[:3]}
    )
    run(settings, sessions, loaded_models, ids)
    with session_scope(sessions) as session:
        session.get(Image, ids[0]).status = ImageStatus.queued  # as if a stale redelivery raced a status change
    outcome = run(settings, sessions, loaded_models, ids)
    assert outcome.done == [ids[0]]
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).where(Prediction.image_id == ids[0])) == 3
        heads = len(loaded_models.findings.findings) if loaded_models.findings else 0  # hidden ones are stored too
        assert session.scalar(select(func.count()).where(FindingPrediction.image_id == ids[0])) == heads
        assert session.get(Job, job_id).done == 3


def test_images_of_a_cancelled_job_are_skipped(env, loaded_models) -> None:
    settings, sessions = env
    sample = sorted(PIPELINE_IMAGES.glob("*.png"))[0]
    job_id, ids = make_job(settings, sessions, {sample.name: sample.read_bytes()}, status=JobStatus.cancelled)
    outcome = run(settings, sessions, loaded_models, ids)
    assert outcome.skipped == ids
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).where(Prediction.image_id.in_(ids))) == 0
        assert session.get(Image, ids[0]).status == ImageStatus.queued


def test_the_recovery_query_finds_only_lost_work(env) -> None:
    settings, sessions = env
    data = sorted(PIPELINE_IMAGES.glob("*.png"))[0].read_bytes()
    closed, closed_ids = make_job(settings, sessions, {"a.png": data, "b.png": data})
    open_job, open_ids = make_job(settings, sessions, {"c.png": data, "e.png": data}, is_open=True)
    cancelled, _ = make_job(settings, sessions, {"d.png": data}, status=JobStatus.cancelled)
    with session_scope(sessions) as session:
        session.get(Image, open_ids[1]).status = ImageStatus.pending  # still filling a batch: not lost
    nothing_live = BrokerView()
    with session_scope(sessions) as session:
        lost = find_lost(session, utcnow() + timedelta(seconds=1), nothing_live)
        assert lost.get(closed) == closed_ids
        assert lost.get(open_job) == open_ids[:1]  # a queued image of an open job was sent, so it can be lost
        assert cancelled not in lost
        assert closed not in find_lost(session, utcnow() - timedelta(minutes=5), nothing_live)  # too recent
        on_a_live_message = BrokerView(live={closed_ids[0]})
        assert find_lost(session, utcnow() + timedelta(seconds=1), on_a_live_message)[closed] == closed_ids[1:]


def test_a_delivery_racing_another_one_stores_the_images_the_other_did_not(env, loaded_models) -> None:
    """The other delivery commits image 0 just before this one writes: this one skips image 0 and stores the rest
    (before, SQLite rolled the whole batch back on the unique constraint and reported it skipped)."""
    settings, sessions = env
    job_id, ids = make_job(
        settings, sessions, {p.name: p.read_bytes() for p in sorted(PIPELINE_IMAGES.glob("*.png"))[:4]}
    )
    engine = sessions.kw["bind"]
    raced = []

    def other_delivery_first(_conn, _cursor, statement, *_args) -> None:
        if raced or not statement.lstrip().upper().startswith(("UPDATE IMAGES", "INSERT INTO PREDICTIONS")):
            return
        raced.append(statement)
        run(settings, sessions, loaded_models, ids[:1])

    event.listen(engine, "before_cursor_execute", other_delivery_first)
    try:
        outcome = run(settings, sessions, loaded_models, ids)
    finally:
        event.remove(engine, "before_cursor_execute", other_delivery_first)
    assert raced and (outcome.done, outcome.skipped) == (ids[1:], ids[:1])
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).where(Prediction.image_id.in_(ids))) == 3 * len(ids)
        assert (session.get(Job, job_id).done, session.get(Job, job_id).status) == (len(ids), JobStatus.done)


def test_a_worker_with_a_prevalence_stores_shifted_probabilities_and_says_which(env, loaded_models) -> None:
    settings, sessions = env
    files = {p.name: p.read_bytes() for p in sorted(PIPELINE_IMAGES.glob("*.png"))[:4]}
    _, at_training = make_job(settings, sessions, files)
    _, at_site = make_job(settings, sessions, files)
    run(settings, sessions, loaded_models, at_training)
    run(replace(settings, prevalence=0.2), sessions, loaded_models, at_site)

    def stored(ids: list[int]) -> list[tuple]:
        with session_scope(sessions) as session:
            rows = session.scalars(select(Prediction).where(Prediction.image_id.in_(ids)))
            return sorted(
                (ids.index(p.image_id), p.model_name, p.probability, p.threshold, p.label, p.prevalence) for p in rows
            )

    trained = {"ensemble": loaded_models.ensemble.trained_prevalence}
    trained |= {name: model.trained_prevalence for name, model in loaded_models.models.items()}
    for before, after in zip(stored(at_training), stored(at_site), strict=True):
        position, name, probability, threshold, label, prevalence = before
        assert after[:2] == (position, name) and after[4] == label  # the same label at any prevalence
        assert prevalence == pytest.approx(trained[name]) and after[5] == 0.2
        shift = PriorShift(trained=trained[name], target=0.2)
        assert after[2] == pytest.approx(float(shift(probability)), rel=1e-5) and after[2] < probability
        assert after[3] == pytest.approx(float(shift(threshold)), rel=1e-9)
    heads = loaded_models.findings
    assert heads is not None

    def findings(ids: list[int]) -> list[tuple]:
        with session_scope(sessions) as session:
            rows = session.scalars(select(FindingPrediction).where(FindingPrediction.image_id.in_(ids)))
            return sorted((ids.index(f.image_id), f.finding, f.probability, f.label, f.prevalence) for f in rows)

    before, after = findings(at_training), findings(at_site)
    assert len(before) == len(after) == 4 * len(heads.findings)  # every head, hidden ones included
    for (position, name, probability, label, prevalence), shifted in zip(before, after, strict=True):
        shift = heads.shift(heads.findings.index(name), 0.2)
        assert prevalence == pytest.approx(shift.trained) and shifted[4] == pytest.approx(shift.target)
        assert shifted[:2] == (position, name) and shifted[3] == label
        assert shifted[2] == pytest.approx(float(shift(probability)), rel=1e-5)
