"""JSON-ready forms of the live views and records, for the API, the SSE events and the store."""

from __future__ import annotations

from datetime import datetime
from enum import Enum


def json_fields(record: object, *names: str) -> dict[str, object]:
    """`record`'s attributes `names`, in that order: a datetime as ISO 8601, an enum as its value."""
    return {name: _json_value(getattr(record, name)) for name in names}


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
