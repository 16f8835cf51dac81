"""JPEG 2000 decoded at reduced resolution, for images that will be shrunk to the model input anyway.

A JPEG 2000 code stream is a wavelet pyramid: openjpeg (through Pillow) can reconstruct only the
coarser levels, a 2**levels smaller image, in a fraction of the time of a full decode. Used only for
lossy JPEG 2000 (plain unsigned grayscale): its 9/7 wavelet's low band is a good low-pass filter, and
on the shared originals the CNN's probability moved by at most 0.005 against a full decode. Lossless
JPEG 2000 is decoded in full: its 5/3 low band moved probabilities by up to 0.018, and a lossless file
must give the PNG's probability within 0.01. Anything else returns None and is decoded in full.
"""

from __future__ import annotations

import io
import math

import numpy as np
import openjpeg
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import JPEG2000

REDUCED_DECODE_SYNTAXES = {JPEG2000}
DECODE_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError, EOFError)


def reduced_j2k_frame(ds: Dataset, factor: int) -> tuple[np.ndarray, int] | None:
    """(stored values of the first frame at 1/2**levels resolution, 2**levels), or None to decode in full."""
    levels = int(math.log2(factor)) if factor > 1 else 0
    if levels < 1 or ds.file_meta.get("TransferSyntaxUID") not in REDUCED_DECODE_SYNTAXES:
        return None
    if int(ds.get("SamplesPerPixel") or 1) != 1 or int(ds.get("PixelRepresentation") or 0) != 0:
        return None
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=int(ds.get("NumberOfFrames") or 1))
        parameters = openjpeg.get_parameters(frame)
        precision = int(parameters["precision"])
        if parameters["is_signed"] or parameters["samples_per_pixel"] != 1 or precision > 16:
            return None
        image = Image.open(io.BytesIO(frame))
        image.reduce = levels
        image.load()
    except DECODE_ERRORS:
        return None
    pixels = np.asarray(image)
    if image.mode == "I;16" and precision < 16:
        pixels = pixels >> (16 - precision)  # Pillow scales 9..15-bit samples up to 16 bits
    elif image.mode not in ("L", "I;16"):
        return None
    return pixels, 2**levels
