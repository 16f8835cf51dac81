"""Read a `multipart/related` body (RFC 2387) into its parts: headers and bytes."""

from __future__ import annotations

from dataclasses import dataclass


class MultipartError(ValueError):
    """The body is not the multipart message its Content-Type announces."""


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def _headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"a part header line has no colon: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


class TooManyParts(MultipartError):
    """More parts than the caller allows; counted before any part is read."""


def split_parts(body: bytes, boundary: str, max_parts: int | None = None) -> list[Part]:
    """The parts between the boundaries; raises MultipartError if the closing boundary or a part's header end is
    missing, TooManyParts (before splitting anything) if there are more than `max_parts`."""
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    framed = b"\r\n" + body
    if max_parts is not None and framed.count(delimiter) > max_parts + 1:  # the closing delimiter is one more
        raise TooManyParts(f"more than {max_parts} parts")
    chunks = framed.split(delimiter)
    if len(chunks) < 2:
        raise MultipartError(f"the body has no part delimited by the boundary {boundary!r}")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        _padding, newline, rest = chunk.partition(b"\r\n")
        if not newline:
            raise MultipartError("a boundary line is not followed by a line break")
        if rest.startswith(b"\r\n"):
            parts.append(Part({}, rest[2:]))
            continue
        head, separator, content = rest.partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("a part's headers are not followed by an empty line")
        parts.append(Part(_headers(head), content))
    raise MultipartError("the body ends without the closing boundary (--boundary--); was it cut short?")
