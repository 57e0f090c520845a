"""Values out of range answer 4xx in the API's words, never a database driver's message or a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.api import api_words
from service.config.site import Site
from tests.harness import running_service

DRIVER_WORDS = ("Python int", "SQLite", "INTEGER", "date value out of range", "asyncpg", "Traceback")


async def test_out_of_range_values(demo_site: Site, tmp_path: Path) -> None:
    cases = [
        ("DELETE", f"/api/overrides/{10**30}", 422, "override_id"),
        ("DELETE", f"/api/overrides/{2**63}", 422, "override_id"),
        ("GET", "/api/telemetry?device=meter-grid-a&point=power&start=0001-01-01T00:00:00%2B14:00", 422, "start"),
        ("GET", "/api/telemetry?device=meter-grid-a&point=power&end=9999-12-31T23:00:00-14:00", 422, "end"),
        ("GET", "/api/reports/energy?month=0001-01", 400, "out of range"),
        ("GET", "/api/reports/energy?month=9999-12", 400, "out of range"),
    ]
    async with running_service(demo_site, tmp_path, drivers=False) as svc, svc.client("admin") as client:
        for method, url, code, words in cases:
            r = await client.request(method, url)
            assert r.status_code == code, (url, r.text)
            detail = r.json()["detail"]
            assert words in detail, (url, detail)
            assert not any(w in detail for w in DRIVER_WORDS), (url, detail)


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (OverflowError("Python int too large to convert to SQLite INTEGER"), "a number in the request is too large"),
        (OverflowError("date value out of range"), "a date or number in the request is out of range"),
        (OverflowError("something else"), "out of range"),
        (ValueError("until: must be in the future"), "until: must be in the future"),  # our own words stay
    ],
)
def test_api_words(exc: Exception, words: str) -> None:
    assert words in api_words(exc)
