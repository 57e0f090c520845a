"""Jinja2 rendering for the dashboard: one environment, formatting in the site's time zone and language."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

WEB_DIR: Final = Path(__file__).resolve().parent
TEMPLATES: Final = WEB_DIR / "templates"
STATIC: Final = WEB_DIR / "static"

# StrictUndefined: a template naming a value the view did not provide fails loudly in tests.
ENV: Final = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def compact(value: object) -> str:
    """A JSON value as written, non-ASCII text kept readable (the page escapes it)."""
    return json.dumps(value, ensure_ascii=False, default=str)


ENV.filters["compact"] = compact


@cache
def static_version(name: str) -> str:
    """A short content hash for cache-busting `/static/<name>?v=...`."""
    path = STATIC / name
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path.is_file() else "0"


@dataclass(frozen=True, slots=True)
class Formatter:
    """Numbers, times and ages as the page shows them."""

    tz: ZoneInfo
    now: datetime
    t: Callable[..., str]

    def time(self, value: datetime | str | None) -> str:
        """HH:MM:SS local."""
        at = self._dt(value)
        return at.strftime("%H:%M:%S") if at else "—"

    def hm(self, value: datetime | str | None) -> str:
        """HH:MM local."""
        at = self._dt(value)
        return at.strftime("%H:%M") if at else "—"

    def when(self, value: datetime | str | None) -> str:
        """MM-DD HH:MM local, with the year when it is not this year."""
        at = self._dt(value)
        if at is None:
            return "—"
        local_now = self.now.astimezone(self.tz)
        return at.strftime("%m-%d %H:%M" if at.year == local_now.year else "%Y-%m-%d %H:%M")

    def age(self, value: datetime | str | None) -> str:
        """How long ago, in the largest sensible unit."""
        at = self._dt(value)
        if at is None:
            return "—"
        s = max(0, int((self.now - at).total_seconds()))
        if s < 60:
            return self.t("age.s", n=s)
        if s < 3600:
            return self.t("age.m", n=s // 60)
        if s < 86400:
            return self.t("age.h", n=s // 3600)
        return self.t("age.d", n=s // 86400)

    def num(self, value: float | None, digits: int = 0) -> str:
        """A number with thousands separators; an em dash when unknown."""
        return "—" if value is None else f"{value:,.{digits}f}"

    def iso(self, value: datetime | None) -> str:
        """ISO 8601 for machine-readable attributes."""
        return value.isoformat() if value else ""

    def _dt(self, value: datetime | str | None) -> datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return None
        return value.astimezone(self.tz)


def render(name: str, **context: Any) -> str:
    """A template rendered with the given context."""
    return ENV.get_template(name).render(static=static_version, **context)
