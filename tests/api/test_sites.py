"""`GET /api/sites` and `?site=` (DESIGN.md §4): the deployment's sites with their supply, alarms and
month's energy; an unknown site id is a 404 that names it, on every route."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from service.api.routes.sites import grid_available, on_generator
from service.config.site import Site
from service.energy.reports import site_meters
from service.live.state import GeneratorView, SourceView, SupplyView, SwitchView
from service.store.db import EnergyInterval, month_bounds
from tests.api.conftest import Live
from tests.harness import running_service

SITE_KEYS = {"id", "name", "grade", "timezone", "compliance", "grid_available", "on_generator", "alarms"}
SITE_KEYS |= {"energy_month_kwh"}


def _source(sid: str, available: bool | None) -> SourceView:
    return SourceView(id=sid, available=available, present=available, voltage_v=None, power_kw=None)


def _switch(position: str | None, known: bool = True) -> SwitchView:
    return SwitchView(id="ats-1", position=position, known=known, code=None, grid_position=None)


def _generator() -> GeneratorView:
    return GeneratorView(
        id="gen-1",
        engine_state=None,
        state=None,
        running=True,
        available=True,
        ready=True,
        power_kw=80.0,
        breaker_closed=True,
        mains_breaker_closed=False,
        demanded=True,
        fail_to_start=False,
    )


def _supply(sources: tuple[SourceView, ...], switches: tuple[SwitchView, ...]) -> SupplyView:
    return SupplyView(sources=sources, transfer_switches=switches, generators=(_generator(),), load_kw=None)


def test_grid_and_generator_flags() -> None:
    """Grid there when any source is; on generator when a known switch feeds from a generator; null unknown."""
    both_lost = _supply((_source("a", False), _source("b", False)), (_switch("gen-1"),))
    assert grid_available(both_lost) is False and on_generator(both_lost) is True
    one_back = _supply((_source("a", None), _source("b", True)), (_switch("a"),))
    assert grid_available(one_back) is True and on_generator(one_back) is False
    unknown = _supply((_source("a", None),), (_switch(None, known=False),))
    assert grid_available(unknown) is None and on_generator(unknown) is None


async def test_sites_row(live: Live) -> None:
    """The one site of the deployment: its figures agree with /api/compliance, /api/alarms and the meters."""
    services = live.svc.services
    site = services.site
    now = services.clock.now()
    start, _ = month_bounds(now.astimezone(site.site.tz).strftime("%Y-%m"), site.site.tz)
    meter = site_meters(site)[0]
    # Two quarter-hours of this month on a site meter, one of them before the month (not counted).
    await services.store.upsert_energy(
        [
            EnergyInterval(meter=meter, start=start, kwh=12.5, band="flat", cost=8.0, after_hours=False),
            EnergyInterval(
                meter=meter, start=start + timedelta(minutes=15), kwh=7.25, band="flat", cost=4.6, after_hours=False
            ),
            EnergyInterval(
                meter=meter, start=start - timedelta(minutes=15), kwh=99.0, band="flat", cost=60.0, after_hours=False
            ),
        ]
    )
    async with live.client("viewer") as c:
        r = await c.get("/api/sites")
        assert r.status_code == 200, r.text
        (row,) = r.json()
        assert set(row) >= SITE_KEYS
        assert row["id"] == site.site.id and row["name"] == site.site.name and row["grade"] == site.site.grade.value
        assert row["compliance"] == (await c.get("/api/compliance")).json()["status"]
        # The simulated morning: grid on ATS position I, the generator at rest.
        assert row["grid_available"] is True and row["on_generator"] is False
        alarms = (await c.get("/api/alarms", params={"state": "active"})).json()
        assert row["alarms"]["active"] >= len(alarms)
        assert (
            row["alarms"]["critical"] <= row["alarms"]["active"] and row["alarms"]["unacked"] <= row["alarms"]["active"]
        )
        assert 19.75 <= row["energy_month_kwh"] < 99.0  # the interval before the month is not counted
        same = (await c.get("/api/sites", params={"site": site.site.id})).json()
        assert same[0]["id"] == site.site.id


async def test_unknown_site_is_404_on_every_route(demo_site: Site, tmp_path: Path) -> None:
    """`?site=` names the deployment's site or gets a 404 that names the unknown id; no key, no answer."""
    paths = ["/api/sites", "/api/rooms", "/api/alarms", "/api/compliance", "/api/devices", "/ui/rooms"]
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        async with svc.client("viewer") as c:
            for path in paths:
                r = await c.get(path, params={"site": "branch-9"})
                assert r.status_code == 404, (path, r.text)
                assert "branch-9" in r.json()["detail"] and demo_site.site.id in r.json()["detail"]
                ok = await c.get(path, params={"site": demo_site.site.id})
                assert ok.status_code == 200, (path, ok.text)
        async with svc.client("") as anonymous:
            assert (await anonymous.get("/api/sites")).status_code == 401
