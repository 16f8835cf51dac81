"""Text a client sent, made fit for the database and for display."""

from __future__ import annotations

import unicodedata


def clean_text(raw: str) -> str:
    """No control characters (NUL, newlines...) and no lone surrogates, which PostgreSQL and UTF-8 refuse."""
    if raw.isascii() and raw.isprintable():
        return raw
    return "".join(ch for ch in raw if unicodedata.category(ch) not in ("Cc", "Cs"))
