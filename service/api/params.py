"""Query parameter types shared by routes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator

ISO_TIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?$")


def _iso_text(value: object) -> object:
    # Pydantic also takes Unix seconds and dates for a datetime; the API promises ISO 8601 only.
    if isinstance(value, str) and not ISO_TIME.match(value):
        raise ValueError(f"'{value[:40]}' is not an ISO 8601 time, e.g. 2026-11-29T08:00:00+08:00")
    return value


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a time zone, e.g. 2026-11-29T08:00:00+08:00")
    try:
        value.astimezone(UTC)  # the store keeps UTC: 0001-01-01T00:00+14:00 has no UTC time
    except OverflowError:
        raise ValueError("out of range: the time must lie between years 1 and 9999 in UTC") from None
    return value


AwareTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_zoned)]
"""An ISO 8601 time with a zone offset (`Z` or `+08:00`)."""
