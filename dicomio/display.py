"""The DICOM grayscale display pipeline as one lookup table over stored pixel values.

Order (PS3.3 C.11, PS3.4 N.2): the modality LUT (Modality LUT Sequence or rescale slope/intercept);
the VOI LUT Sequence, else the first window centre/width (with its VOI LUT Function), else the full
range the stored values can take; MONOCHROME1 (or Presentation LUT Shape INVERSE) inverted; the
result scaled to 8 bits. Bits Stored is respected by masking every word to its stored bits (and
sign-extending signed data) before the table, so garbage in the unused high bits (overlays in 12-bit
data) never reaches the picture.

The table has one entry per possible word of the container (256 or 65,536 entries), so a full image
costs one `numpy.take` however complex the chain is.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi, apply_windowing

TAKE_BLOCK_PIXELS = 1 << 17


def stored_values(container_bits: int, bits_stored: int, signed: bool) -> np.ndarray:
    """The stored value each possible container word stands for (unused high bits masked off)."""
    words = np.arange(1 << container_bits, dtype=np.int64)
    stored = words & ((1 << bits_stored) - 1)
    if signed:
        stored = np.where(stored >= 1 << (bits_stored - 1), stored - (1 << bits_stored), stored)
    return stored


def _voi_lut_bits(ds: Dataset) -> int:
    """Output depth of the first VOI LUT: its descriptor's bits, or fewer if the entries never need more."""
    item = ds.VOILUTSequence[0]
    declared = int(item.LUTDescriptor[2])
    entries = item.LUTData
    if isinstance(entries, bytes):
        entries = np.frombuffer(entries, dtype="<u2" if declared > 8 else "u1")
    largest = int(np.max(entries)) if len(entries) else 0
    return max(1, min(declared, largest.bit_length()))


def _has_voi_lut(ds: Dataset) -> bool:
    sequence = ds.get("VOILUTSequence")
    return bool(sequence) and "LUTDescriptor" in sequence[0] and "LUTData" in sequence[0]


def _has_window(ds: Dataset) -> bool:
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def display_unit(ds: Dataset, stored: np.ndarray, notes: list[str]) -> np.ndarray:
    """Modality LUT, then VOI: displayed brightness in [0, 1] for each stored value, before any inversion."""
    values = apply_modality_lut(stored, ds)
    if np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    if _has_voi_lut(ds):
        if not np.issubdtype(values.dtype, np.integer):
            values = np.round(values).astype(np.int64)
        return apply_voi(values, ds).astype(np.float64) / ((1 << _voi_lut_bits(ds)) - 1)
    if _has_window(ds):
        # Two sentinels far outside any window come out as the bottom and top of pydicom's output range.
        probe = np.concatenate([values.astype(np.float64), [-1e15, 1e15]])
        try:
            with np.errstate(over="ignore"):
                windowed = apply_windowing(probe, ds)
        except ValueError as error:
            notes.append(f"window ignored ({error}); the full stored range is shown")
        else:
            low, high = windowed[-2], windowed[-1]
            return (windowed[:-2] - low) / (high - low)
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros(values.shape)


def is_inverted(ds: Dataset) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    return photometric == "MONOCHROME1" or str(ds.get("PresentationLUTShape", "")).strip().upper() == "INVERSE"


def display_lut(ds: Dataset, container_bits: int, bits_stored: int, signed: bool, notes: list[str]) -> np.ndarray:
    """uint8 table indexed by the raw container word (as unsigned) giving the displayed grey level."""
    unit = display_unit(ds, stored_values(container_bits, bits_stored, signed), notes)
    if is_inverted(ds):
        unit = 1.0 - unit
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def apply_display(ds: Dataset, pixels: np.ndarray, bits_stored: int, signed: bool, notes: list[str]) -> np.ndarray:
    """8-bit displayed image from a decoded grayscale frame of 8- or 16-bit words."""
    container_bits = 8 * pixels.dtype.itemsize
    bits_stored = min(bits_stored, container_bits)
    lut = display_lut(ds, container_bits, bits_stored, signed, notes)
    words = pixels.view(f"u{pixels.dtype.itemsize}")
    displayed = np.empty(words.shape, dtype=np.uint8)
    # In blocks of rows: numpy widens the indices to intp, and a small block keeps that temporary in
    # cache (about twice as fast as one `take` over a 5-megapixel image).
    rows = max(1, TAKE_BLOCK_PIXELS // max(1, words.shape[-1]))
    for start in range(0, len(words), rows):
        np.take(lut, words[start : start + rows], out=displayed[start : start + rows])
    return displayed
