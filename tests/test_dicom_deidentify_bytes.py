"""The cheap de-identification gives the same bytes as the slow one: the profile's rules applied only to the
elements a file has, and the pixel data copied from the upload instead of written again."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from dicomanonymizer import simpledicomanonymizer as anonymizer
from pydicom import uid
from pydicom.dataset import Dataset

from dicomio import deidentify as deidentify_module
from dicomio import prepare as dicom
from dicomio.prepare import prepare_dicom
from dicomio.read import read_dicom
from tests.dicom_corpus import image_dataset
from tests.test_dicom_deidentify import PRIVATE_VALUE, SECRET, phi_dataset, written


def _every_rule(ds: Dataset) -> dict:
    """What `anonymize_dataset` applies given our rules as extra rules: its base rules, updated with ours."""
    rules = anonymizer.initialize_actions()
    rules.update(deidentify_module._profile_rules())
    return rules


def _implicit(ds: Dataset) -> Dataset:
    ds.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    return ds


def _with_element_after_pixels(ds: Dataset) -> Dataset:
    ds.private_block(0x7FE1, "ACME AFTER PIXELS", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
    return ds


def _odd_length(_ds: Dataset) -> Dataset:
    return image_dataset(np.arange(63 * 65, dtype=np.uint8).reshape(63, 65), 8, PatientID="MRN-ODD")


CASES = {
    "explicit 16-bit with PHI": lambda ds: ds,
    "implicit VR": _implicit,
    "a private element after the pixel data": _with_element_after_pixels,
    "odd-length 8-bit pixel data": _odd_length,
}


@pytest.mark.parametrize("case", CASES)
def test_rules_for_present_elements_give_the_same_file_as_every_rule(case: str, monkeypatch) -> None:
    source = CASES[case](phi_dataset())
    cheap = copy.deepcopy(source)
    deidentify_module.deidentify(cheap, SECRET)
    monkeypatch.setattr(deidentify_module, "_rules_for", _every_rule)
    full = copy.deepcopy(source)
    deidentify_module.deidentify(full, SECRET)
    assert written(cheap) == written(full)


@pytest.mark.parametrize("case", CASES)
def test_the_stored_file_is_the_de_identified_data_set_written_whole(case: str) -> None:
    data = written(CASES[case](phi_dataset()))
    expected = read_dicom(data)
    deidentify_module.deidentify(expected, SECRET)
    stored = prepare_dicom(data, SECRET, deidentify_enabled=True).stored_bytes
    assert stored == written(expected)
    assert PRIVATE_VALUE.encode() not in stored
    assert read_dicom(stored).PixelData == read_dicom(data).PixelData


@pytest.mark.parametrize("case", ["explicit 16-bit with PHI", "implicit VR"])
def test_native_pixel_data_is_copied_not_written_again(case: str, monkeypatch) -> None:
    written_with_pixels = []

    def recording(ds: Dataset) -> bytes:
        written_with_pixels.append(dicom.PIXEL_DATA in ds)
        return write(ds)

    write = dicom.part10
    monkeypatch.setattr(dicom, "part10", recording)
    prepare_dicom(written(CASES[case](phi_dataset())), SECRET, deidentify_enabled=True)
    assert written_with_pixels == [False]
