"""Page arguments shared by the API and the dashboard; the slicing itself always happens in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from flask import abort

MAX_PER_PAGE = 1000


@dataclass(frozen=True)
class PageArgs:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def pages(self, total: int) -> int:
        return max(1, -(-total // self.per_page))

    def meta(self, total: int) -> dict[str, int]:
        return {"page": self.page, "per_page": self.per_page, "total": total, "pages": self.pages(total)}


def positive_int(args: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, f"{name} must be a whole number, got {raw!r}")
    if value < 1 or (maximum is not None and value > maximum):
        limit = f" and at most {maximum}" if maximum is not None else ""
        abort(400, f"{name} must be at least 1{limit}, got {value}")
    return value


def page_args(args: Mapping[str, str], default_per_page: int = 100) -> PageArgs:
    return PageArgs(
        page=positive_int(args, "page", 1),
        per_page=positive_int(args, "per_page", default_per_page, MAX_PER_PAGE),
    )
