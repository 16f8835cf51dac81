"""Query-string and form arguments shared by the API and the dashboard: pages, flags, choices. Bad values are 400s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Mapping, TypeVar

from flask import abort

MAX_PER_PAGE = 1000
MAX_PAGE = 10**9  # keeps OFFSET within the databases' 64-bit integers
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")
E = TypeVar("E", bound=Enum)


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
        page=positive_int(args, "page", 1, MAX_PAGE),
        per_page=positive_int(args, "per_page", default_per_page, MAX_PER_PAGE),
    )


def flag(args: Mapping[str, str], name: str) -> bool:
    """A yes/no argument: true/yes/on/1 or false/no/off/0/empty, any case."""
    raw = (args.get(name) or "").strip().lower()
    if raw not in TRUE_WORDS + FALSE_WORDS:
        abort(400, f"{name} must be true or false; got {raw!r}")
    return raw in TRUE_WORDS


def choice(args: Mapping[str, str], name: str, choices: Sequence[str], default: str | None) -> str | None:
    raw = (args.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        abort(400, f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return raw


def enum_choice(args: Mapping[str, str], name: str, enum: type[E]) -> E | None:
    raw = choice(args, name, [member.value for member in enum], None)
    return enum(raw) if raw else None
