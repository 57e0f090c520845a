"""GET /api/reports/energy: JSON and CSV from the state store; stored once the month is generated."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from service.clock import ManualClock
from service.config.site import Site
from service.control.scheduler import REPORT_ID
from tests.harness import running_service
from tests.service.test_reports import seed, utc


async def test_energy_report_json_csv_and_stored(demo_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(utc("2026-04-02 09:00"))
    async with running_service(demo_site, tmp_path, clock=clock, drivers=False) as svc:
        await seed(svc.services.store)
        async with svc.client("viewer") as client:
            r = await client.get("/api/reports/energy", params={"month": "2026-03", "by": "department"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["site"], body["month"], body["by"], body["source"]) == ("hq", "2026-03", "department", "live")
            depts = {d["department"]: d for d in body["departments"]}
            assert depts["marketing"]["kwh"] == 14.0
            assert depts["marketing"]["bands"]["peak"] == {"kwh": 12.5, "cost": 14.0}
            assert depts["marketing"]["after_hours_kwh"] == 4.0
            assert depts["marketing"]["top_rooms"][0]["room"] == "r2119"
            assert depts["marketing"]["violations"] == {"lit_empty_room": 2, "ac_too_cold": 1}
            assert depts["admin"]["change_pct"] == 400.0
            assert body["totals"]["site_meters_kwh"] == 19.1

            r = await client.get("/api/reports/energy", params={"month": "2026-03", "format": "csv", "lang": "en"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/csv")
            assert "energy-hq-2026-03.csv" in r.headers["content-disposition"]
            rows = {row[0]: row for row in csv.reader(io.StringIO(r.text))}
            assert rows["marketing"][2] == "14.0"

            for params in ({"month": "2026-13"}, {"month": "March"}, {}, {"month": "2026-03", "by": "room"}):
                assert (await client.get("/api/reports/energy", params=params)).status_code == 422, params
            assert (await client.post(f"/api/schedules/{REPORT_ID}/run")).status_code == 403

        async with svc.client("") as client:
            assert (await client.get("/api/reports/energy", params={"month": "2026-03"})).status_code == 401

        async with svc.client("operator") as client:
            r = await client.post(f"/api/schedules/{REPORT_ID}/run", json={"month": "2026-03"})
            assert r.status_code == 200, r.text
            assert r.json()["departments_kwh"] == 19.0
            clock.advance(3600)
            r = await client.get("/api/reports/energy", params={"month": "2026-03"})
            assert r.json()["source"] == "stored"
            assert r.json()["generated_at"].startswith("2026-04-02T01:00")
