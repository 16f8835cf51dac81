"""PNG, JPEG, BMP and TIFF: read by Pillow through `models.preprocess.decode_image`, stored as received."""

from __future__ import annotations

from formats.registry import Format, Picture, register
from models.preprocess import ACCEPTED, decode_image, sniff

STORED_EXTENSION = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tiff"}
EXTENSIONS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "BMP": (".bmp",), "TIFF": (".tif", ".tiff")}


def read(data: bytes, target_size: int) -> Picture:
    """Pillow reduces a large picture to models.preprocess.MAX_WORKING_SIDE, whatever `target_size`."""
    picture = decode_image(data)
    width, height = picture.info.get("source_size", picture.size)
    return Picture(picture, width, height, picture.mode)


def _format(name: str) -> Format:
    return Format(
        name=name,
        extensions=EXTENSIONS[name],
        detect=lambda head: sniff(head) == name,
        read=read,
        stored_extension=STORED_EXTENSION[name],
        content_is_not=f"a PNG, JPEG, BMP or TIFF image; {ACCEPTED}",
    )


for _name in STORED_EXTENSION:
    register(_format(_name))
