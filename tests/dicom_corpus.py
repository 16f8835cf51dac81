"""A DICOM test corpus made from a shared PNG: one file per transfer syntax and per special case.

`build_corpus(out_dir, png)` writes the files with pydicom (and its encoders: RLE, JPEG-LS, JPEG 2000)
and dcmtk (`dcmconv` big endian and deflate, `dcmcjpeg`, `dcmcjpls`, `img2dcm`, `dcmmkdir`), and
returns a `Corpus`: name -> `CorpusFile` with the 8-bit pixels a correct reader shows, whether the
encoding is lossy, and the error kind a refused file must raise. A file whose tool is missing is
listed in `Corpus.missing` with the reason; `Corpus.file(name)` then skips (fails under CI=true).

Stored values: the 8-bit files hold the PNG's grey levels p. The 12-bit files hold 16p + r with r in
0..7 and the window centre 2040.5 / width 4081, which maps them back to p exactly (r/16 rounds away).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

from tests.dicom_corpus_objects import non_image_datasets

SOP_DX = uid.DigitalXRayImageStorageForPresentation
WINDOW_12BIT = (2040.5, 4081.0)


@dataclass
class CorpusFile:
    path: Path
    expected: np.ndarray | None = None
    lossy: bool = False
    error_kind: str | None = None


@dataclass
class Corpus:
    files: dict[str, CorpusFile] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def file(self, name: str) -> CorpusFile:
        if name not in self.files:
            from tests.conftest import skip_or_fail

            skip_or_fail(self.missing.get(name, f"no corpus file {name!r}"))
        return self.files[name]


def image_dataset(pixels: np.ndarray, bits_stored: int, signed: bool = False, **attributes) -> FileDataset:
    """A DX For Presentation image (explicit VR little endian) holding `pixels` as stored values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SOP_DX, uid.generate_uid()
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SOP_DX, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid.generate_uid(), uid.generate_uid()
    ds.PatientName, ds.PatientID, ds.StudyDate, ds.AccessionNumber = "CORPUS^TEST", "CORPUS-1", "20240102", "ACC1"
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "DX", "PA", "CHEST"
    ds.ImagerPixelSpacing, ds.PresentationLUTShape = [0.143, 0.143], "IDENTITY"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 8 * pixels.dtype.itemsize
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()
    return ds


def twelve_bit(p: np.ndarray, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 8, p.shape, dtype=np.uint16)
    return p.astype(np.uint16) * 16 + noise


def run_dcmtk(tool: str, *args: str | Path) -> str | None:
    """Run a dcmtk tool; the reason it could not, or None."""
    if shutil.which(tool) is None:
        return f"dcmtk's {tool} is not installed (apt-get install dcmtk)"
    result = subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=120)
    return f"{tool} failed: {result.stderr.strip()[-500:]}" if result.returncode else None


class _Writer:
    def __init__(self, out_dir: Path, corpus: Corpus):
        self.out_dir, self.corpus = out_dir, corpus

    def save(self, name: str, ds: Dataset, expected=None, lossy=False, error_kind=None, **write) -> Path:
        path = self.out_dir / f"{name}.dcm"
        ds.save_as(path, **write)
        self.corpus.files[name] = CorpusFile(path, expected, lossy, error_kind)
        return path

    def tool(self, name: str, tool: str, args: list, source: Path, expected, lossy: bool) -> None:
        path = self.out_dir / f"{name}.dcm"
        problem = run_dcmtk(tool, *args, source, path)
        if problem:
            self.corpus.missing[name] = problem
        else:
            self.corpus.files[name] = CorpusFile(path, expected, lossy)


def _transfer_syntaxes(w: _Writer, p: np.ndarray) -> None:
    window = {"WindowCenter": WINDOW_12BIT[0], "WindowWidth": WINDOW_12BIT[1]}
    base12 = w.save("explicit_le", image_dataset(twelve_bit(p), 12, **window), p)
    base8 = w.save("explicit_le_8bit", image_dataset(p, 8), p)
    implicit = image_dataset(twelve_bit(p), 12, **window)
    implicit.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    w.save("implicit_le", implicit, p)
    w.tool("big_endian", "dcmconv", ["+tb"], base12, p, False)
    w.tool("deflated", "dcmconv", ["+td"], base12, p, False)
    for name, syntax, options, lossy in (
        ("rle", uid.RLELossless, {}, False),
        ("j2k_lossless", uid.JPEG2000Lossless, {}, False),
        ("j2k_lossy", uid.JPEG2000, {"j2k_cr": [15]}, True),
    ):
        ds = image_dataset(twelve_bit(p), 12, **window)
        ds.compress(syntax, **options)
        w.save(name, ds, p, lossy=lossy)
    w.tool("jpeg_baseline", "dcmcjpeg", ["+eb", "+un"], base8, p, True)
    w.tool("jpeg_extended", "dcmcjpeg", ["+ee", "+un"], base12, p, True)
    w.tool("jpeg_lossless_p14", "dcmcjpeg", ["+el", "+un"], base12, p, False)
    w.tool("jpeg_lossless_sv1", "dcmcjpeg", ["+e1", "+un"], base12, p, False)
    w.tool("jpegls_lossless", "dcmcjpls", ["+el", "+un"], base12, p, False)
    w.tool("jpegls_near_lossless", "dcmcjpls", ["+en", "+md", "2", "+un"], base12, p, True)
    jpeg = w.out_dir / "source.jpg"
    Image.fromarray(p).save(jpeg, quality=95)
    w.tool("jpeg_baseline_img2dcm", "img2dcm", ["-i", "JPEG"], jpeg, p, True)


def _pixel_cases(w: _Writer, p: np.ndarray) -> None:
    w.save("monochrome1", image_dataset(255 - p, 8, PhotometricInterpretation="MONOCHROME1"), p)
    garbage = twelve_bit(p, seed=1) | np.where(np.arange(p.shape[0])[:, None] % 2, 0x4000, 0x0000).astype(np.uint16)
    w.save("twelve_bit", image_dataset(garbage, 12, WindowCenter=WINDOW_12BIT[0], WindowWidth=WINDOW_12BIT[1]), p)
    voi = image_dataset(twelve_bit(p, seed=2), 12, WindowCenter=100, WindowWidth=50)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.add_new(0x00283006, "US", ((np.arange(4096) // 16) * 257).tolist())
    voi.VOILUTSequence = [lut]
    w.save("voi_lut", voi, p)
    signed = (p.astype(np.int32) * 64 + np.random.default_rng(3).integers(0, 32, p.shape) - 8192).astype(np.int16)
    windows = {"WindowCenter": [8160.5, 100.0], "WindowWidth": [16321.0, 50.0]}
    w.save("window_only", image_dataset(signed, 16, signed=True, RescaleIntercept=8192, RescaleSlope=1, **windows), p)
    frames = np.stack([p, 255 - p])
    w.save("multiframe", image_dataset(frames, 8, NumberOfFrames=2), p)
    w.save("lateral", image_dataset(p, 8, ViewPosition="LL"), p)
    w.save("not_chest", image_dataset(p, 8, BodyPartExamined="ABDOMEN"), p)
    raw = image_dataset(p, 8)
    raw.file_meta, raw.preamble = FileMetaDataset(), None
    path = w.out_dir / "IM000001"
    raw.save_as(path, implicit_vr=True, little_endian=True)
    w.corpus.files["no_preamble"] = CorpusFile(path, p)


def _refused(w: _Writer, p: np.ndarray) -> None:
    for name, (ds, kind) in non_image_datasets(image_dataset(p, 8)).items():
        w.save(name, ds, error_kind=kind, enforce_file_format=True)
    whole = w.corpus.files["explicit_le_8bit"].path.read_bytes()
    (w.out_dir / "truncated.dcm").write_bytes(whole[: len(whole) // 2])
    w.corpus.files["truncated"] = CorpusFile(w.out_dir / "truncated.dcm", error_kind="truncated")
    compressed = w.corpus.files["j2k_lossless"].path.read_bytes()
    (w.out_dir / "truncated_j2k.dcm").write_bytes(compressed[: len(compressed) * 2 // 3])
    w.corpus.files["truncated_j2k"] = CorpusFile(w.out_dir / "truncated_j2k.dcm", error_kind="truncated")
    huge = image_dataset(p[:8, :8], 8)
    huge.Rows = huge.Columns = 30000
    w.save("too_large", huge, error_kind="too-large")


def _dicomdir(w: _Writer) -> None:
    folder = w.out_dir / "dicomdir"
    (folder / "IMAGES").mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(("explicit_le_8bit", "explicit_le"), start=1):
        shutil.copyfile(w.corpus.files[name].path, folder / "IMAGES" / f"IM{index:06d}")
    problem = run_dcmtk("dcmmkdir", "+r", "+I", "+id", folder, "+D", folder / "DICOMDIR", "IMAGES")
    if problem:
        w.corpus.missing["dicomdir"] = problem
    else:
        w.corpus.files["dicomdir"] = CorpusFile(folder / "DICOMDIR", error_kind="dicomdir")


SHARED_DICOM = {
    "shared_dx": "nih_cxr_gcp_DX_uncompressed_NoFinding.dcm",
    "shared_jpeg_baseline": "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819_CR_jpegbaseline.dcm",
    "shared_monochrome1": "txv_Fake_MONOHR1_CR_MONOCHROME1_modified.dcm",
}


def _shared(w: _Writer, shared_dicom: Path) -> None:
    for name, filename in SHARED_DICOM.items():
        if (shared_dicom / filename).is_file():
            w.corpus.files[name] = CorpusFile(shared_dicom / filename, lossy=name != "shared_dx")
        else:
            w.corpus.missing[name] = f"the shared DICOM file {shared_dicom / filename} is missing"


def build_corpus(out_dir: Path, png: Path, shared_dicom: Path | None = None) -> Corpus:
    """Every corpus file made from `png` (8-bit grayscale), written under `out_dir`, plus the shared DICOM files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    p = np.asarray(Image.open(png).convert("L"))
    corpus = Corpus()
    writer = _Writer(out_dir, corpus)
    _transfer_syntaxes(writer, p)
    _pixel_cases(writer, p)
    _refused(writer, p)
    _dicomdir(writer)
    if shared_dicom is not None:
        _shared(writer, shared_dicom)
    return corpus


def large_dataset(png: Path, rows: int = 2500, columns: int = 2048) -> FileDataset:
    """A full-resolution 16-bit radiograph (BitsStored 16, windowed), resized from `png` with Lanczos."""
    gray = Image.open(png).convert("L").convert("F").resize((columns, rows), Image.Resampling.LANCZOS)
    stored = np.clip(np.asarray(gray) * 257.0, 0, 65535).astype(np.uint16)
    return image_dataset(stored, 16, WindowCenter=32767.5, WindowWidth=65536.0)
