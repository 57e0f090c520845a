"""GET /ui/trend beyond the rollups' 90 days: the 12-month trend of a room reads the older part from
InfluxDB (a real InfluxDB 1.x, where the sink writes) and the recent part from the store; without
InfluxDB, or with one that does not answer, the chart says so and shows what the store has."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config.site import Site
from service.store.db import EnergyInterval, Rollup
from tests import servers
from tests.harness import RunningService, running_service

AC = "r2119-ac"
DAY = 86400


@pytest.fixture
def influx_db(influxdb1: servers.Server) -> Iterator[str]:
    """A database of its own on the InfluxDB 1.x server, dropped afterwards."""
    db = f"trend_{uuid.uuid4().hex[:8]}"
    query = f"{influxdb1.url}/query"
    httpx.post(query, data={"q": f"CREATE DATABASE {db}"}, timeout=30).raise_for_status()
    yield db
    httpx.post(query, data={"q": f"DROP DATABASE {db}"}, timeout=30)


async def seed_rollups(svc: RunningService, value: float) -> datetime:
    """The last two hours of the thermostat's temperature in the store's 1-minute rollups; now."""
    now = svc.services.clock.now().replace(second=0, microsecond=0)
    rows = [
        Rollup(device=AC, point="local_temperature", minute=now - timedelta(minutes=m), min=value, max=value,
               mean=value, last=value, count=1)
        for m in range(1, 121)
    ]  # fmt: skip
    await svc.services.store.upsert_rollups(rows)
    return now


async def trend(svc: RunningService, kind: str, id: str, lang: str = "en") -> dict[str, Any]:
    async with svc.client("viewer") as c:
        r = await c.get("/ui/trend", params={"kind": kind, "id": id, "range": "12m", "lang": lang})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def at(body: dict[str, Any], label: str, when: datetime) -> float | None:
    """The value of the series whose label starts with `label` in the bucket holding `when`."""
    (series,) = [s for s in body["series"] if s["label"].startswith(label)]
    i = (int(when.timestamp()) - body["x"][0]) // body["step_s"]
    value: float | None = series["values"][i]
    return value


@pytest.fixture
async def with_influx(
    demo_site: Site, tmp_path: Path, influxdb1: servers.Server, influx_db: str
) -> AsyncIterator[RunningService]:
    """The service (no drivers) with its telemetry sink on the InfluxDB 1.x database."""
    influx = {"influx_url": influxdb1.url, "influx_bucket": influx_db}
    async with running_service(demo_site, tmp_path, drivers=False, influx=influx) as svc:
        yield svc


async def test_a_year_of_a_rooms_temperature_from_influxdb(
    with_influx: RunningService, influxdb1: servers.Server, influx_db: str
) -> None:
    svc = with_influx
    now = await seed_rollups(svc, 25.0)
    site = svc.services.site.site.id
    old = [  # (age, point, value): two readings of one day, one of another, a setpoint; another site's
        (timedelta(days=200, hours=1), "local_temperature", 20.0),
        (timedelta(days=200, hours=1, minutes=30), "local_temperature", 23.0),
        (timedelta(days=300), "local_temperature", 27.5),
        (timedelta(days=300), "cooling_setpoint", 26.0),
    ]
    lines = [
        f"telemetry,site={site},device={AC},point={p} value={v} {int((now - age).timestamp())}" for age, p, v in old
    ]
    lines.append(
        f"telemetry,site=elsewhere,device={AC},point=local_temperature value=99 {int(now.timestamp()) - DAY * 250}"
    )
    async with httpx.AsyncClient(base_url=influxdb1.url, timeout=30) as c:
        r = await c.post("/write", params={"db": influx_db, "precision": "s"}, content="\n".join(lines))
    assert r.status_code == 204, r.text

    body = await trend(svc, "room", "r2119")
    assert body["note"] is None and body["step_s"] == DAY and len(body["x"]) == 365
    # Buckets are days ending at the current minute: the two readings 200 days ago share one.
    assert at(body, "temperature", now - timedelta(days=200, hours=1)) == 21.5
    assert at(body, "temperature", now - timedelta(days=300)) == 27.5
    assert at(body, "cooling setpoint", now - timedelta(days=300)) == 26.0
    assert at(body, "temperature", now - timedelta(days=250)) is None  # another site's reading
    assert at(body, "temperature", now - timedelta(minutes=5)) == 25.0  # the store's rollups
    temps = [v for s in body["series"] if s["label"].startswith("temperature") for v in s["values"] if v is not None]
    assert len(temps) == 3  # nothing made up between the buckets that have data


@pytest.mark.parametrize("answer", ["none", "closed port", "victoriametrics"])
async def test_without_influxdb_history_the_chart_says_so(
    demo_site: Site, tmp_path: Path, victoria: servers.Server, answer: str
) -> None:
    influx = {
        "none": None,
        "closed port": {"influx_url": f"http://127.0.0.1:{servers.free_port()}"},
        "victoriametrics": {"influx_url": victoria.url},
    }[answer]
    en, zh = {
        "none": (
            "History beyond 90 days needs InfluxDB (not configured); the chart shows what this service keeps.",
            "超过 90 天的历史需要 InfluxDB（未配置）；图中只有本服务保存的数据。",
        ),
        "closed port": (
            "InfluxDB unreachable; the chart shows what this service keeps.",
            "InfluxDB 无法访问；图中只有本服务保存的数据。",
        ),
        "victoriametrics": (
            "InfluxDB did not answer the history query; the chart shows what this service keeps.",
            "InfluxDB 未能回答历史查询；图中只有本服务保存的数据。",
        ),
    }[answer]  # fmt: skip
    async with running_service(demo_site, tmp_path, drivers=False, influx=influx) as svc:
        now = await seed_rollups(svc, 24.0)
        body = await trend(svc, "room", "r2119")
        assert body["note"] == en
        assert (await trend(svc, "room", "r2119", lang="zh"))["note"] == zh
        assert at(body, "temperature", now - timedelta(minutes=5)) == 24.0  # what the store has
        # A department's year is drawn from its meter's energy intervals: the store has it all, no note.
        dept = svc.services.site.departments[0]
        assert dept.meter is not None
        kept = EnergyInterval(
            meter=dept.meter, start=now - timedelta(days=200), kwh=5.0, band="flat", cost=0, after_hours=False
        )
        await svc.services.store.upsert_energy([kept])
        year = await trend(svc, "department", dept.id)
        assert year["note"] is None and at(year, "power kW", kept.start) == 20.0
        async with svc.client("viewer") as c:
            month = (await c.get("/ui/trend", params={"kind": "room", "id": "r2119", "range": "30d"})).json()
        assert month["note"] is None  # within the rollups: nothing to say
