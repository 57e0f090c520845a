"""List routes page with limit/offset and say the whole count in X-Total-Count."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from service.alarms import rules
from service.config.site import Site
from tests.harness import running_service


async def test_alarms_overrides_and_schedule_history_count_and_page(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        core, now = svc.services.core, svc.services.clock.now()
        for i in range(3):
            await core.report_now(rules.telemetry_dropped(f"paging-{i}", dropped=i + 1))
        async with svc.client("operator") as c:
            for i in range(3):
                until = (now + timedelta(minutes=30 + i)).isoformat()
                assert (await c.post("/api/overrides", json={"room": "r2119", "until": until})).status_code == 201
            runs = [(await c.post("/api/schedules/override-expiry/run")).status_code for _ in range(3)]
            alarms = await c.get("/api/alarms", params={"state": "all", "limit": 2})
            alarms_rest = await c.get("/api/alarms", params={"state": "all", "limit": 2, "offset": 2})
            overrides = await c.get("/api/overrides", params={"limit": 2})
            sweep_runs = [(await c.post("/api/schedules/after-hours/run")).json()["started_at"] for _ in range(3)]
            history = await c.get("/api/schedules/after-hours/history", params={"limit": 2, "offset": 1})
            unknown = await c.get("/api/schedules/no-such/history")
    assert runs == [200, 200, 200]
    assert alarms.headers["x-total-count"] == "3" and len(alarms.json()) == 2 and len(alarms_rest.json()) == 1
    assert {a["subject"] for a in alarms.json() + alarms_rest.json()} == {"paging-0", "paging-1", "paging-2"}
    assert overrides.headers["x-total-count"] == "3" and len(overrides.json()) == 2
    # Newest first: offset 1 skips the latest run.
    assert history.headers["x-total-count"] == "3"
    assert [r["started_at"] for r in history.json()] == sweep_runs[::-1][1:3]
    assert unknown.status_code == 404
