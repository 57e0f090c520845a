"""A room's 30-day trend on the dashboard: GET /ui/trend over a month of 1-minute rollups, vs the bare store query.

The demo site's service (drivers off, SQLite) gets 30 days of 1-minute rollups for room r2119's
thermostat (temperature and setpoint: 86,400 rows). The baseline is Store.telemetry() for the same
two series and buckets (what GET /api/telemetry does: every minute row read and merged in Python),
in the same process and run; the figure is the whole HTTP round trip the chart's script makes
(auth, Store.rollup_means grouped in the database, JSON). Median of ROUNDS after one warm-up each;
the target is the issue's "well under a second".

    python -m tests.bench trend
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from service.config.site import load_site
from service.store.db import Rollup
from tests.bench._common import Figure
from tests.conftest import DEMO_SITE
from tests.harness import running_service

ROUNDS = 7
DAYS = 30
DEVICE = "r2119-ac"
POINTS = ("local_temperature", "cooling_setpoint")
TARGET_MS = 500.0


async def measure() -> list[dict[str, Any]]:
    site = load_site(DEMO_SITE)
    with tempfile.TemporaryDirectory() as tmp:
        async with running_service(site, Path(tmp), drivers=False) as svc:
            store = svc.services.store
            now = svc.services.clock.now().replace(second=0, microsecond=0)
            rows = []
            for m in range(DAYS * 24 * 60, 0, -1):
                minute = now - timedelta(minutes=m)
                for point in POINTS:
                    v = 24.0 + (m % 720) / 360
                    rows.append(
                        Rollup(device=DEVICE, point=point, minute=minute, min=v, max=v, mean=v, last=v, count=6)
                    )
            for i in range(0, len(rows), 20_000):
                await store.upsert_rollups(rows[i : i + 20_000])
            start, end = now - timedelta(days=DAYS), now + timedelta(minutes=1)

            async def bare() -> float:
                began = time.perf_counter()
                for point in POINTS:
                    await store.telemetry(DEVICE, point, start, end, timedelta(hours=1))
                return time.perf_counter() - began

            async with svc.client("viewer") as client:

                async def served(span: str) -> float:
                    began = time.perf_counter()
                    r = await client.get("/ui/trend", params={"kind": "room", "id": "r2119", "range": span})
                    r.raise_for_status()
                    assert sum(v is not None for s in r.json()["series"] for v in s["values"]) > 0
                    return time.perf_counter() - began

                await bare()
                await served("30d")
                base, month, day = [], [], []
                for _ in range(ROUNDS):
                    base.append(await bare())
                    month.append(await served("30d"))
                    day.append(await served("24h"))
    b = statistics.median(base) * 1000
    return [
        Figure("trend_30d_room_ms", statistics.median(month) * 1000, "ms", b, TARGET_MS, at_most=True).row(),
        Figure("trend_24h_room_ms", statistics.median(day) * 1000, "ms", b, TARGET_MS, at_most=True).row(),
    ]


def run() -> list[dict[str, Any]]:
    """Rows for results.json."""
    return asyncio.run(measure())
