"""Heat maps to PACS as DICOM: a Secondary Capture derived from the source (same study, referencing it), labelled
"AI heat map, not for diagnosis" in its header and in its pixels; dciodvfy finds no error; with
RADBATCH_DICOM_FORWARD_HEATMAPS the forwarding task sends one per heat map to a real C-STORE SCP."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom import uid

from db.models import Image, ImageStatus, Job, Prediction
from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import create_user
from dicomio.heatmap_sc import LABEL, heatmap_sc, overlay
from settings import Settings
from tests.conftest import skip_or_fail
from tests.dicom_corpus import image_dataset
from tests.dicom_network_helpers import Destination as Receiver
from tests.dicom_network_helpers import write_dicom_folder
from worker.heatmap_forwarding import forward_heatmaps
from worker.heatmaps import picture


def heat() -> PILImage.Image:
    return picture(np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1)))


def test_the_secondary_capture_is_derived_labelled_and_valid(tmp_path: Path) -> None:
    source = image_dataset(np.full((64, 48), 100, dtype=np.uint8), 8, PatientID="P1")
    pixels = overlay(np.asarray(source.pixel_array), heat())
    assert pixels.shape == (64, 48, 3) and pixels[40, 40, 0] != pixels[40, 40, 2]  # coloured where the map is
    sc = heatmap_sc(source, pixels, "cnn", "cnn-1")
    assert sc.SOPClassUID == uid.SecondaryCaptureImageStorage and sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SeriesDescription == LABEL and LABEL in sc.ImageComments and sc.BurnedInAnnotation == "YES"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.SOPInstanceUID == heatmap_sc(source, pixels, "cnn", "cnn-1").SOPInstanceUID
    lateral = source.copy()
    lateral.ViewPosition = "LL"
    assert heatmap_sc(lateral, pixels, "cnn", "cnn-1") is None  # orientation unknown: not drawn the wrong way
    if shutil.which("dciodvfy") is None:
        skip_or_fail("dciodvfy is not installed (apt-get install dicom3tools)")
    path = tmp_path / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    output = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert [line for line in (output.stdout + output.stderr).splitlines() if line.startswith("Error")] == []


def test_the_forwarding_task_sends_one_secondary_capture_per_heat_map(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path / "received")
    (source,) = write_dicom_folder(tmp_path / "source", 1, studies=1).values()
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'heat.db'}",
        secret_key="heat",
        dicom_forward=receiver.address,
        dicom_forward_heatmaps=True,
    )
    make_dirs(settings)
    settings.heatmap_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    shutil.copyfile(source, settings.upload_dir / "a.dcm")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        job = Job(user_id=create_user(session, "owner", "owner password").id, name="heat")
        session.add(job)
        session.flush()
        image = Image(job_id=job.id, filename="a.dcm", path="a.dcm", stored_name="a.dcm", status=ImageStatus.done)
        image.study_instance_uid = str(pydicom.dcmread(source).StudyInstanceUID)
        session.add(image)
        session.flush()
        for model in ("cnn", "unet", "ensemble"):
            session.add(
                Prediction(
                    image_id=image.id,
                    model_name=model,
                    headline=model == "ensemble",  # the worker marks the headline model's row
                    model_version=f"{model}-1",
                    probability=0.7,
                    label="disease",
                    threshold=0.5,
                )
            )
        image_id = image.id
    heat().save(settings.heatmap_dir / f"{image_id}-cnn.png", transparency=bytes(range(256)))
    try:
        assert forward_heatmaps(sessions, settings, image_id) == 1
    finally:
        engine.dispose()
        receiver.stop()
    (received,) = [pydicom.dcmread(path) for path in receiver.received]
    assert received.SOPClassUID == uid.SecondaryCaptureImageStorage and received.SeriesDescription == LABEL
    assert "cnn cnn-1" in received.ImageComments
