"""DICOM pixel reading: every transfer syntax and display case gives the PNG's pixels, every refusal its error.

The corpus (tests/dicom_corpus.py) is made from a shared 1024-px NIH original and the three shared
DICOM files. Lossless files must give exactly the PNG's 8-bit pixels (the corpus picks stored values
and windows that map back exactly, so "within one grey level" is not needed); lossy ones stay within a
small tolerance of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import uid

from dicomio.read import (
    DicomDirError,
    DicomError,
    decode_dicom,
    dicom_metadata,
    dicomdir_paths,
    looks_like_dicom,
    read_dicom,
)
from models.preprocess import preprocess
from tests.conftest import SHARED_DATA, skip_or_fail
from tests.dicom_corpus import Corpus, build_corpus, image_dataset, large_dataset

SOURCE = "00000798_025.png"
LOSSLESS = {
    "explicit_le": uid.ExplicitVRLittleEndian,
    "explicit_le_8bit": uid.ExplicitVRLittleEndian,
    "implicit_le": uid.ImplicitVRLittleEndian,
    "big_endian": uid.ExplicitVRBigEndian,
    "deflated": uid.DeflatedExplicitVRLittleEndian,
    "rle": uid.RLELossless,
    "jpeg_lossless_p14": uid.JPEGLossless,
    "jpeg_lossless_sv1": uid.JPEGLosslessSV1,
    "jpegls_lossless": uid.JPEGLSLossless,
    "j2k_lossless": uid.JPEG2000Lossless,
    "no_preamble": uid.ImplicitVRLittleEndian,
}
LOSSY = {
    "jpeg_baseline": uid.JPEGBaseline8Bit,
    "jpeg_baseline_img2dcm": uid.JPEGBaseline8Bit,
    "jpeg_extended": uid.JPEGExtended12Bit,
    "jpegls_near_lossless": uid.JPEGLSNearLossless,
    "j2k_lossy": uid.JPEG2000,
}
REFUSED = ("sr", "presentation_state", "pdf", "rt_struct", "no_pixel_data", "truncated", "truncated_j2k", "too_large")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    png = SHARED_DATA / "originals" / SOURCE
    if not png.is_file():
        skip_or_fail(f"the shared NIH original {png} is missing")
    return build_corpus(tmp_path_factory.mktemp("dicom-corpus"), png, SHARED_DATA / "dicom")


def pixels(path: Path, **options) -> np.ndarray:
    return np.asarray(decode_dicom(path, **options).image, dtype=np.int16)


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_transfer_syntax_gives_the_png_pixels(corpus: Corpus, name: str) -> None:
    entry = corpus.file(name)
    decoded = decode_dicom(entry.path)
    assert decoded.image.mode == "L"
    assert decoded.metadata.transfer_syntax_uid == LOSSLESS[name]
    np.testing.assert_array_equal(np.asarray(decoded.image), entry.expected)


@pytest.mark.parametrize("name", LOSSY)
def test_lossy_transfer_syntax_stays_close_to_the_png(corpus: Corpus, name: str) -> None:
    entry = corpus.file(name)
    decoded = decode_dicom(entry.path)
    assert decoded.metadata.transfer_syntax_uid == LOSSY[name]
    error = np.abs(np.asarray(decoded.image, dtype=np.int16) - entry.expected)
    assert error.mean() < 1.0, f"{name}: mean error {error.mean():.2f} grey levels"
    assert np.percentile(error, 99.9) <= 10, f"{name}: 99.9th percentile error {np.percentile(error, 99.9)}"


def test_monochrome1_is_inverted(corpus: Corpus) -> None:
    entry = corpus.file("monochrome1")
    stored = read_dicom(entry.path).pixel_array
    np.testing.assert_array_equal(stored, 255 - entry.expected)
    np.testing.assert_array_equal(pixels(entry.path), entry.expected)
    monochrome2 = pixels(corpus.file("shared_jpeg_baseline").path)
    monochrome1 = pixels(corpus.file("shared_monochrome1").path)  # the same JPEG, labelled MONOCHROME1
    np.testing.assert_array_equal(monochrome1, 255 - monochrome2)


def test_twelve_bit_stored_ignores_the_unused_high_bits(corpus: Corpus) -> None:
    entry = corpus.file("twelve_bit")
    words = np.frombuffer(read_dicom(entry.path).PixelData, dtype="<u2")
    assert (words & 0xF000).any(), "the corpus file must carry garbage in the unused high bits"
    np.testing.assert_array_equal(pixels(entry.path), entry.expected)
    assert decode_dicom(entry.path).metadata.bits_stored == 12


def test_voi_lut_sequence_wins_over_the_window(corpus: Corpus) -> None:
    entry = corpus.file("voi_lut")
    np.testing.assert_array_equal(pixels(entry.path), entry.expected)


def test_first_window_after_rescale_on_signed_data(corpus: Corpus) -> None:
    entry = corpus.file("window_only")
    np.testing.assert_array_equal(pixels(entry.path), entry.expected)


def test_multiframe_uses_the_first_frame_and_says_so(corpus: Corpus) -> None:
    entry = corpus.file("multiframe")
    decoded = decode_dicom(entry.path)
    np.testing.assert_array_equal(np.asarray(decoded.image), entry.expected)
    assert decoded.notes == ["multi-frame file (2 frames): the first frame was used"]
    assert decoded.metadata.number_of_frames == 2


def test_lateral_and_non_chest_are_flagged_but_decoded(corpus: Corpus) -> None:
    lateral = decode_dicom(corpus.file("lateral").path)
    assert lateral.warnings == ["lateral view: the models were trained on frontal (PA/AP) views"]
    np.testing.assert_array_equal(np.asarray(lateral.image), corpus.file("lateral").expected)
    assert decode_dicom(corpus.file("not_chest").path).warnings == [
        "body part ABDOMEN: the models were trained on chest radiographs"
    ]
    assert decode_dicom(corpus.file("explicit_le").path).warnings == []


@pytest.mark.parametrize("name", REFUSED)
def test_non_images_and_broken_files_get_their_own_error(corpus: Corpus, name: str) -> None:
    entry = corpus.file(name)
    with pytest.raises(DicomError) as caught:
        decode_dicom(entry.path)
    assert caught.value.kind == entry.error_kind
    assert str(caught.value) and "Traceback" not in str(caught.value)


def test_refusal_messages_name_the_object(corpus: Corpus) -> None:
    messages = {}
    for name in ("sr", "presentation_state", "pdf", "rt_struct", "too_large"):
        with pytest.raises(DicomError) as caught:
            read_dicom(corpus.file(name).path)
        messages[name] = str(caught.value)
    assert messages["sr"].startswith("not an image: a structured report (Comprehensive 3D SR Storage)")
    assert "presentation state" in messages["presentation_state"]
    assert "Encapsulated PDF" in messages["pdf"]
    assert "RT structure set" in messages["rt_struct"]
    assert messages["too_large"].startswith("image too large (30000x30000 pixels")
    for name, expected in (
        ("truncated", r"element \(7FE0,0010\) has \d+ of its 1048576 bytes"),
        ("truncated_j2k", "pixel data ends before its end marker"),
    ):
        with pytest.raises(DicomError, match=expected):
            read_dicom(corpus.file(name).path)


def test_dicomdir_is_recognised_and_its_files_decode(corpus: Corpus) -> None:
    entry = corpus.file("dicomdir")
    with pytest.raises(DicomDirError) as caught:
        read_dicom(entry.path)
    assert caught.value.kind == "dicomdir"
    listed = dicomdir_paths(entry.path)
    assert sorted(path.name for path in listed) == ["IM000001", "IM000002"]
    for path in listed:
        assert path.is_file() and path.suffix == ""
        np.testing.assert_array_equal(pixels(path), corpus.file("explicit_le").expected)


def test_detection_by_content(corpus: Corpus) -> None:
    raw = corpus.file("no_preamble").path
    data = raw.read_bytes()
    assert raw.suffix == "" and data[128:132] != b"DICM"
    assert looks_like_dicom(data)
    assert looks_like_dicom(corpus.file("explicit_le").path.read_bytes())
    png = SHARED_DATA / "originals" / SOURCE
    for other in (png.read_bytes(), b"\xff\xd8\xff\xe0" + bytes(200), b"II*\x00" + bytes(200), b""):
        assert not looks_like_dicom(other)
    with pytest.raises(DicomError) as caught:
        read_dicom(png)
    assert caught.value.kind == "not-dicom"


def test_metadata_kept_per_image(corpus: Corpus) -> None:
    metadata = decode_dicom(corpus.file("jpeg_lossless_sv1").path).metadata
    source = read_dicom(corpus.file("explicit_le").path)
    assert metadata.study_instance_uid == source.StudyInstanceUID
    assert metadata.sop_instance_uid == source.SOPInstanceUID
    assert (metadata.accession_number, metadata.study_date, metadata.view_position) == ("ACC1", "20240102", "PA")
    assert (metadata.modality, metadata.body_part_examined, metadata.bits_stored) == ("DX", "CHEST", 12)
    assert metadata.pixel_spacing_mm == (0.143, 0.143) and metadata.pixel_spacing_source == "ImagerPixelSpacing"
    assert (
        metadata.transfer_syntax_name
        == "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"
    )
    assert metadata.to_dict()["photometric_interpretation"] == "MONOCHROME2"


@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.JPEG2000])
def test_reduced_decode_preprocesses_like_the_full_image(syntax: str) -> None:
    png = SHARED_DATA / "originals" / SOURCE
    if not png.is_file():
        skip_or_fail(f"the shared NIH original {png} is missing")
    ds = large_dataset(png)
    if syntax != ds.file_meta.TransferSyntaxUID:
        ds.compress(syntax, j2k_cr=[20])
    reduced = decode_dicom(ds, target_size=128).image
    assert reduced.size == (1024, 1250)
    full = preprocess(decode_dicom(ds).image, 128, 1)
    difference = np.abs(preprocess(reduced, 128, 1) - full) * 255
    # Lanczos keeps detail where reducing first (JPEG 2000: in the wavelet domain) lost it: up to 4.4 levels.
    assert difference.mean() < 0.5 and difference.max() < 5, (difference.mean(), difference.max())
    assert decode_dicom(corpus_png_dataset(png), target_size=128).image.size == (1024, 1024), "1024 px is not reduced"


def corpus_png_dataset(png: Path):
    return image_dataset(np.asarray(Image.open(png).convert("L")), 8)


def test_same_model_input_as_the_png(corpus: Corpus) -> None:
    png = Image.open(SHARED_DATA / "originals" / SOURCE)
    expected = preprocess(png, 128, 1)
    for name in ("explicit_le", "j2k_lossless", "jpeg_lossless_sv1", "monochrome1", "window_only"):
        np.testing.assert_allclose(preprocess(decode_dicom(corpus.file(name).path).image, 128, 1), expected, atol=1e-6)


def test_cnn_gives_the_png_probability(corpus: Corpus) -> None:
    from models.registry import load_model

    model = load_model("cnn")
    png = Image.open(SHARED_DATA / "originals" / SOURCE)
    names = ("explicit_le", "jpeg_lossless_p14", "j2k_lossless", "jpeg_baseline", "jpeg_extended", "j2k_lossy")
    batch = [preprocess(png, model.input_size, model.channels)]
    batch += [
        preprocess(decode_dicom(corpus.file(name).path).image, model.input_size, model.channels) for name in names
    ]
    probabilities = model.predict(np.stack(batch))
    for name, probability in zip(names, probabilities[1:]):
        tolerance = 0.03 if corpus.file(name).lossy else 0.01
        assert abs(probability - probabilities[0]) <= tolerance, (name, probability, probabilities[0])


@pytest.mark.parametrize("name", ["explicit_le", "implicit_le", "deflated", "no_preamble", "rle", "j2k_lossless"])
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")  # pydicom names the damage it reads past
def test_damaged_files_raise_dicom_error_and_nothing_else(corpus: Corpus, name: str) -> None:
    data = corpus.file(name).path.read_bytes()
    rng = np.random.default_rng(7)
    damaged = [data[: int(cut)] for cut in rng.integers(1, len(data), 15)]
    if name in ("explicit_le", "implicit_le", "deflated", "no_preamble"):  # header bytes, parsed by pydicom
        for _ in range(40):
            copy = bytearray(data)
            for position in rng.integers(0, min(len(data), 1200), 3):
                copy[position] = int(rng.integers(0, 256))
            damaged.append(bytes(copy))
    for bad in damaged:
        try:
            dicom_metadata(read_dicom(bad))
            decode_dicom(bad, target_size=128)
        except DicomError as error:
            assert error.kind and str(error)
