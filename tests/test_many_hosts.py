"""Workers on other hosts, for real: network namespaces made here (tests/hosts.py) hold a services host (Redis,
PostgreSQL, an S3 server process), a web host (gunicorn and the DICOM listener) and two worker hosts that know only
the three URLs. One rig serves the module; every test starts the workers it needs, and the rig's teardown kills
every process in every namespace and deletes them, whatever happened.

Skipped (with the reason) where namespaces cannot be made; under CI=true (root) that is a failure.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.dicom_network_helpers import write_dicom_folder
from tests.host_services import DICOM_PORT, DICOM_SENDER, Site, images, site, upload
from tests.hosts import RigUnavailable, leftovers
from tests.services import Api, wait_for
from tests.stack import skip_or_fail

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
SHARED_DATA = Path(os.environ.get("RADBATCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BIG_JOB = 2000
JOB = 400  # the failure tests' jobs: long enough that the failure lands mid-job
LINK_DOWN_S = 60
STORE_STOPPED_S = 30
FINISH_S = 600
AFTER_LINK = 800  # a job sent once the link is back: w2 alone needs well over BACK_TO_WORK_S for it
BACK_TO_WORK_S = 30
DICOM_FILES = 24


@pytest.fixture(scope="module")
def rig_site():
    prefix = ""
    try:
        with site() as (running, api):
            prefix = running.rig.prefix
            yield running, api
    except RigUnavailable as why:
        skip_or_fail(f"no network namespaces here: {why}")
    assert prefix and leftovers(prefix) == [], leftovers(prefix)  # not one of its namespaces or links is left


def _exactly_once(site_: Site, job: dict, expected: int) -> None:
    """Every file has one image row, done, with one prediction per model (cnn, unet and their ensemble); nothing
    lost, nothing doubled."""
    assert (job["status"], job["done"], job["failed"]) == ("done", expected, 0), job
    counts = site_.counts(job["id"])
    models = counts.pop("models")
    assert models == 3, counts
    assert counts == {
        "images": expected,
        "done": expected,
        "failed": 0,
        "paths": expected,
        "most_per_path": 1,
        "predictions": models * expected,
        "most_per_pair": 1,
        "most_per_image": models,
        "fewest_per_image": models,
    }, counts


def _wait_done_at_least(api: Api, job_id: int, done: int) -> None:
    wait_for(lambda: api.job(job_id)["done"] >= done, 300, f"job {job_id}: {done} images done")


def _batches_done(log: Path, after: int = 0) -> int:
    """Batches a worker's log says it predicted (at least one image done), after byte offset `after`."""
    text = log.read_bytes()[after:].decode(errors="replace")
    return sum(int(n) > 0 for n in re.findall(r"batch of \d+: (\d+) done", text))


def test_a_2000_image_job_on_two_worker_hosts_finishes_exactly_once(rig_site) -> None:
    site_, api = rig_site
    site_.ensure_workers("w1", "w2")
    started = time.monotonic()
    job_id = upload(api, images(BIG_JOB, SHARED_DATA), "two thousand")
    job = api.wait_finished(job_id, timeout=FINISH_S)
    took = time.monotonic() - started
    _exactly_once(site_, job, BIG_JOB)
    for name in ("w1", "w2"):  # both hosts worked, and kept no patient file of their own
        host = site_.rig[name]
        assert _batches_done(host.logs / "worker.log") > 0, f"{name} predicted nothing"
        kept = [p for p in host.home.rglob("*") if p.suffix.lower() in {".png", ".dcm"}]
        assert kept == [], kept
    print(f"\n{BIG_JOB} images on 2 worker hosts: {took:.0f} s, {BIG_JOB / took:.1f} img/s")


def test_a_worker_host_cannot_see_the_other_hosts_folders(rig_site) -> None:
    site_, _ = rig_site
    site_.ensure_workers("w1")
    w1 = site_.rig["w1"]
    pid = w1.processes["worker"].pid
    listing = w1.run(["sh", "-c", f"ls -A {site_.rig['web'].home} {site_.rig['w2'].home} | wc -l; hostname"], {})
    assert listing.split() == ["0", w1.hostname]
    assert Path(f"/proc/{pid}/ns/mnt").resolve() != Path("/proc/self/ns/mnt").resolve()


def test_the_object_store_stopped_for_30_s_mid_job_makes_images_wait_not_fail(rig_site) -> None:
    site_, api = rig_site
    site_.ensure_workers("w1", "w2")
    job_id = upload(api, images(JOB, SHARED_DATA, offset=BIG_JOB), "store stopped")
    _wait_done_at_least(api, job_id, 32)
    services = site_.rig["services"]
    services.signal_process("s3", signal.SIGSTOP)  # the S3 server process stops answering; it keeps its objects
    try:
        time.sleep(STORE_STOPPED_S)
        assert api.job(job_id)["failed"] == 0
    finally:
        services.signal_process("s3", signal.SIGCONT)
    _exactly_once(site_, api.wait_finished(job_id, timeout=FINISH_S), JOB)


def test_a_worker_host_whose_link_is_down_for_60_s_comes_back_and_nothing_is_lost_or_doubled(rig_site) -> None:
    site_, api = rig_site
    site_.ensure_workers("w1", "w2")
    w1 = site_.rig["w1"]
    job_id = upload(api, images(JOB, SHARED_DATA, offset=2 * BIG_JOB), "link down")
    wait_for(lambda: site_.holds_work("w1"), 120, "w1 holding a batch")
    w1.link(up=False)
    try:
        done_before = api.job(job_id)["done"]
        time.sleep(LINK_DOWN_S)
        during = api.job(job_id)
        assert during["failed"] == 0 and during["done"] > done_before, during  # w2 went on alone
    finally:
        w1.link(up=True)
    back = time.monotonic()
    mark = (w1.logs / "worker.log").stat().st_size
    again = upload(api, images(AFTER_LINK, SHARED_DATA, offset=3 * BIG_JOB), "after the link came back")
    # The batch w1 held when its link went down may finish now (once); a second one means it took new work.
    wait_for(lambda: _batches_done(w1.logs / "worker.log", after=mark) >= 2, BACK_TO_WORK_S, "w1 back at work")
    print(f"\nw1 predicted again {time.monotonic() - back:.1f} s after its link came back")
    _exactly_once(site_, api.wait_finished(job_id, timeout=FINISH_S), JOB)
    _exactly_once(site_, api.wait_finished(again, timeout=FINISH_S), AFTER_LINK)


def test_a_worker_host_killed_whole_mid_job_the_other_finishes_with_none_lost_or_doubled(rig_site) -> None:
    site_, api = rig_site
    site_.ensure_workers("w1", "w2")
    w1, w2 = site_.rig["w1"], site_.rig["w2"]
    mark = (w1.logs / "worker.log").stat().st_size
    job_id = upload(api, images(JOB, SHARED_DATA, offset=4 * BIG_JOB), "host killed")
    _wait_done_at_least(api, job_id, 32)
    wait_for(lambda: site_.holds_work("w2"), 120, "w2 holding a batch")
    w2.kill_all()  # every process in its namespace, SIGKILL: the host is gone mid-batch
    assert w2.pids() == []
    _exactly_once(site_, api.wait_finished(job_id, timeout=FINISH_S), JOB)
    log = (w1.logs / "worker.log").read_bytes()[mark:].decode(errors="replace")
    assert "orphaned unacknowledged messages" in log or "again (no live message)" in log, "w1 never swept w2's batch"


def test_a_study_sent_by_c_store_to_the_web_host_is_predicted_on_a_worker_host(rig_site, tmp_path: Path) -> None:
    """The listener on the web host stores into the object store; a worker on another host predicts every file."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    site_, _ = rig_site
    site_.ensure_workers("w1")
    files = list(write_dicom_folder(tmp_path / "study", DICOM_FILES, studies=2).values())
    sop_class = dcmread(files[0], stop_before_pixels=True).SOPClassUID
    ae = AE(ae_title=DICOM_SENDER)
    ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    association = ae.associate(site_.rig["web"].address, DICOM_PORT, ae_title="RADBATCH")
    assert association.is_established
    try:
        statuses = [association.send_c_store(dcmread(path)).Status for path in files]
    finally:
        association.release()
    assert statuses == [0] * DICOM_FILES  # each one stored, flushed and committed on the web host before Success
    job_id = wait_for(lambda: site_.listener_job(DICOM_SENDER), 60, "the listener's job")
    wait_for(lambda: site_.counts(job_id)["done"] == DICOM_FILES, FINISH_S, f"job {job_id}: every file predicted")
    counts = site_.counts(job_id)
    assert (counts["images"], counts["failed"], counts["most_per_pair"]) == (DICOM_FILES, 0, 1), counts
    assert counts["predictions"] == counts["models"] * DICOM_FILES, counts
