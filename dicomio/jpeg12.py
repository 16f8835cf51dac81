"""A pydicom decoder plugin for 12-bit JPEG Extended (process 4), through imagecodecs' libjpeg-turbo 3.

pydicom's GDCM and Pillow plugins decode only the 8-bit samples of this transfer syntax, and the one
that decodes 12-bit (pylibjpeg-libjpeg) is GPLv3; imagecodecs is BSD-3-Clause. `register()` adds the
plugin after pydicom's own, so they are still tried first.
"""

from __future__ import annotations

from pydicom import uid
from pydicom.pixels import get_decoder
from pydicom.pixels.common import PhotometricInterpretation
from pydicom.pixels.decoders.base import DecodeRunner

DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("imagecodecs>=2024.1",)}
PLUGIN_LABEL = "imagecodecs"


def is_available(transfer_syntax: str) -> bool:
    try:
        import imagecodecs
    except ImportError:
        return False
    return transfer_syntax == uid.JPEGExtended12Bit and bool(imagecodecs.JPEG8.available)


def decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    import imagecodecs

    frame = imagecodecs.jpeg8_decode(src)
    if frame.ndim == 3 and runner.photometric_interpretation.startswith("YBR"):
        runner.set_option("photometric_interpretation", PhotometricInterpretation.RGB)
    return frame.tobytes()


def register() -> None:
    try:
        get_decoder(uid.JPEGExtended12Bit).add_plugin(PLUGIN_LABEL, (__name__, "decode_frame"))
    except ValueError:  # already registered
        pass
