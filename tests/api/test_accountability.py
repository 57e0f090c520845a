"""The administration office over the API: violations and fines (roles, audit, exports), the hazard
register's lifecycle with roles, `hazard_overdue` at the due time on injected time, bad input."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl

from service.alarms.record import Alarm, AlarmState, Severity
from service.clock import ManualClock
from service.config.site import Site
from service.energy.exports import XLSX_TYPE
from tests.harness import RunningService, running_service
from tests.service.test_quarterly import seed, supply_and_hazards
from tests.service.test_violations import local, simulate_march


async def _audit(client: httpx.AsyncClient, result: str) -> list[dict[str, Any]]:
    r = await client.get("/api/audit", params={"result": result})
    assert r.status_code == 200, r.text
    body = r.json()
    return list(body["items"] if isinstance(body, dict) else body)


async def test_violations_report_fines_and_exports(demo_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(local("2026-04-02 09:00"))
    async with running_service(demo_site, tmp_path, clock=clock, drivers=False) as svc:
        await simulate_march(demo_site, svc.services.store)
        async with svc.client("viewer") as viewer:
            r = await viewer.get("/api/reports/violations", params={"month": "2026-03"})
            assert r.status_code == 200, r.text
            body = r.json()
            by = {d["department"]: d for d in body["departments"]}
            assert by["marketing"]["counts"] == {"lit_empty_room": 2, "left_on_after_hours": 1}
            assert by["engineering"]["fines"]["proposed"] == 250.0
            lit = [i for i in by["marketing"]["incidents"] if i["type"] == "lit_empty_room"]
            heater = next(i for i in by["engineering"]["incidents"] if i["type"] == "high_power_appliance")
            decision = {"violation": lit[0]["id"], "status": "waived", "reason": "projector test"}
            assert (await viewer.post("/api/reports/violations/fines", json=decision)).status_code == 403

            for params, field in (
                ({"month": "2026-05"}, "month"),  # not begun on 2026-04-02
                ({"month": "2026-13"}, "month"),
                ({"month": "2026-03", "format": "pdf"}, "format"),
            ):
                r = await viewer.get("/api/reports/violations", params=params)
                assert r.status_code == 422, params
                assert field in r.json()["detail"], r.text

        async with svc.client("operator") as operator:
            assert (await operator.post("/api/reports/violations/fines", json=decision)).status_code == 403

        async with svc.client("admin") as admin:
            r = await admin.post("/api/reports/violations/fines", json=decision)
            assert r.status_code == 200, r.text
            assert r.json()["amount"] == 50.0 and r.json()["department"] == "marketing"
            confirm = {"violation": heater["id"], "status": "confirmed", "reason": "electric heater", "amount": 300}
            assert (await admin.post("/api/reports/violations/fines", json=confirm)).status_code == 200
            for bad, code in (
                ({**decision, "violation": "alarm:nope@20260301T000000Z"}, 404),
                ({**decision, "reason": ""}, 422),
                ({**decision, "status": "proposed"}, 422),
                ({**confirm, "amount": -1}, 422),
            ):
                assert (await admin.post("/api/reports/violations/fines", json=bad)).status_code == code, bad
            [waived] = await _audit(admin, "fine_waived")
            assert waived["new"]["reason"] == "projector test" and waived["who"].startswith("key:")
            assert len(await _audit(admin, "fine_confirmed")) == 1

            body = (await admin.get("/api/reports/violations", params={"month": "2026-03"})).json()
            by = {d["department"]: d for d in body["departments"]}
            assert by["marketing"]["fines"] | {} == {
                "proposed": 100.0, "confirmed": 0.0, "waived": 50.0,
                "proposed_count": 2, "confirmed_count": 0, "waived_count": 1,
            }  # fmt: skip
            assert (by["engineering"]["fines"]["confirmed"], body["fines"]["confirmed"]) == (300.0, 300.0)

            r = await admin.get("/api/reports/violations", params={"month": "2026-03", "format": "csv"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            assert r.content.startswith(b"\xef\xbb\xbf")  # a Chinese site: the people's CSV by default
            rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
            assert rows[1][0] == "部门" and any(row and row[0] == "市场营销部" for row in rows)
            r = await admin.get("/api/reports/violations", params={"month": "2026-03", "format": "csv", "lang": "en"})
            assert not r.content.startswith(b"\xef\xbb\xbf")
            assert next(csv.reader(io.StringIO(r.text)))[:2] == ["id", "type"]
            r = await admin.get("/api/reports/violations", params={"month": "2026-03", "format": "xlsx"})
            assert r.status_code == 200 and "violations-hq-2026-03.xlsx" in r.headers["content-disposition"]
            book = openpyxl.load_workbook(io.BytesIO(r.content))
            assert book.sheetnames == ["各部门违规与罚款", "违规明细"]
            assert book["违规明细"].max_row == 6

            # The energy report: machine CSV (lang=en) as before, the people's CSV on a Chinese site.
            r = await admin.get("/api/reports/energy", params={"month": "2026-03", "format": "csv", "lang": "en"})
            assert r.text.startswith("department,name,kwh")
            r = await admin.get("/api/reports/energy", params={"month": "2026-03", "format": "csv"})
            assert r.content.startswith(b"\xef\xbb\xbf")
            rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
            assert rows[1][:2] == ["部门", "电量 kWh"] and rows[2][0] == "行政部"


async def _create(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {
        "title": "配电室门锁损坏",
        "location": "B1 配电室",
        "department": "admin",
        "severity": "high",
        "due": "2026-03-13",
    }
    return await client.post("/api/hazards", json={**body, **fields})


async def _overdue_alarms(svc: RunningService) -> list[dict[str, Any]]:
    async with svc.client("viewer") as c:
        r = await c.get("/api/alarms", params={"state": "all", "type": "hazard_overdue"})
        assert r.status_code == 200, r.text
        return list(r.json())


async def test_hazard_lifecycle_roles_and_overdue(demo_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(local("2026-03-11 10:00"))
    async with running_service(demo_site, tmp_path, clock=clock, drivers=False) as svc:
        async with svc.client("viewer") as viewer:
            assert (await _create(viewer)).status_code == 403
        async with svc.client("operator") as op:
            for fields, field in (
                ({"due": "2026-03-10"}, "due"),  # the end of the 10th: before it is reported
                ({"due": "2026-03-11T09:00:00+08:00"}, "due"),
                ({"due": "tomorrow"}, "due"),
                ({"department": "sales"}, "department"),
                ({"severity": "urgent"}, "severity"),
                ({"title": ""}, "title"),
            ):
                r = await _create(op, **fields)
                assert r.status_code == 422, (fields, r.text)
                assert field in r.json()["detail"], r.text
            assert (await op.get("/api/hazards")).json() == []  # nothing stored

            r = await _create(op)
            assert r.status_code == 201, r.text
            hazard = r.json()
            assert (hazard["status"], hazard["overdue"], hazard["department_name"]) == ("open", False, "行政部")
            assert hazard["due"] == "2026-03-14T00:00:00+08:00"  # the end of the 13th, site time
            r = await op.patch(
                f"/api/hazards/{hazard['id']}", json={"status": "rectifying", "rectification": "锁已订购"}
            )
            assert r.status_code == 200 and r.json()["status"] == "rectifying"
            r = await op.patch(f"/api/hazards/{hazard['id']}", json={"status": "closed", "rectification": "已更换"})
            assert r.status_code == 403  # operators cannot close
            assert (await op.patch("/api/hazards/999", json={"status": "rectifying"})).status_code == 404
        async with svc.client("viewer") as viewer:
            assert [h["id"] for h in (await viewer.get("/api/hazards", params={"status": "open"})).json()] == [1]
            assert (await viewer.get("/api/hazards", params={"status": "overdue"})).json() == []
            r = await viewer.patch(f"/api/hazards/{hazard['id']}", json={"status": "rectifying"})
            assert r.status_code == 403

        # Past due: hazard_overdue is raised at the due time, not before.
        watch = svc.services.hazards
        clock.set(local("2026-03-13 23:59"))
        await watch.check()
        assert await _overdue_alarms(svc) == []
        clock.set(local("2026-03-14 00:00"))
        await watch.check()
        [alarm] = await _overdue_alarms(svc)
        assert (alarm["subject"], alarm["severity"], alarm["state"]) == ("1", "high", "active_unacked")
        async with svc.client("viewer") as viewer:
            [late] = (await viewer.get("/api/hazards", params={"status": "overdue"})).json()
            assert late["overdue"] is True

        async with svc.client("admin") as admin:
            r = await admin.patch(
                f"/api/hazards/{hazard['id']}", json={"status": "closed", "rectification": "已更换门锁"}
            )
            assert r.status_code == 200, r.text
            closed = r.json()
            assert (closed["status"], closed["closed_by"], closed["rectification"]) == (
                "closed",
                closed["closed_by"],
                "已更换门锁",
            )
            assert closed["closed_by"].startswith("key:") and closed["overdue"] is False
            r = await admin.patch(f"/api/hazards/{hazard['id']}", json={"status": "rectifying"})
            assert r.status_code == 409  # closed stays closed
            results = [e["result"] for e in await _audit(admin, "hazard_opened")]
            results += [e["result"] for e in await _audit(admin, "hazard_rectifying")]
            results += [e["result"] for e in await _audit(admin, "hazard_closed")]
            assert results == ["hazard_opened", "hazard_rectifying", "hazard_closed"]
        clock.advance(61)  # the alarm engine's off-delay
        await watch.check()
        await svc.services.core.tick()
        [alarm] = await _overdue_alarms(svc)
        assert alarm["state"] in ("cleared_unacked", "cleared"), alarm


async def test_hazard_prefilled_from_a_supply_alarm(demo_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(local("2026-03-11 10:00"))
    async with running_service(demo_site, tmp_path, clock=clock, drivers=False) as svc:
        at = clock.now() - timedelta(minutes=5)
        for ident, kind, subject in (("a-backfeed", "backfeed", "gen-1"), ("a-lit", "lit_empty_room", "r2119")):
            await svc.services.store.save_alarm(
                Alarm(id=ident, type=kind, severity=Severity.critical, subject=subject, state=AlarmState.active_unacked,
                      active=True, raised_at=at, updated_at=at, message=f"{subject}: {kind}")
            )  # fmt: skip
        async with svc.client("operator") as op:
            r = await op.get("/api/hazards/from-alarm/a-backfeed")
            assert r.status_code == 200, r.text
            pre = r.json()
            assert (pre["source_alarm"], pre["severity"], pre["due"]) == ("a-backfeed", "critical", "2026-03-14")
            assert pre["title"].startswith("backfeed")
            assert (await op.get("/api/hazards/from-alarm/a-lit")).status_code == 422  # energy waste, not a hazard
            assert (await op.get("/api/hazards/from-alarm/nope")).status_code == 404
            r = await op.post("/api/hazards", json=pre)
            assert r.status_code == 201 and r.json()["source_alarm"] == "a-backfeed"
            r = await _create(op, source_alarm="nope")
            assert r.status_code == 422 and "source_alarm" in r.json()["detail"]


async def test_quarterly_over_the_api(demo_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(local("2026-04-02 09:00"))
    async with running_service(demo_site, tmp_path, clock=clock, drivers=False) as svc:
        store = svc.services.store
        await seed(store)
        await simulate_march(demo_site, store)
        await supply_and_hazards(store)
        async with svc.client("viewer") as viewer:
            r = await viewer.get("/api/reports/quarterly", params={"quarter": "2026-Q1"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["totals"]["kwh"], body["totals"]["previous_kwh"], body["totals"]["year_before_kwh"]) == (
                180.0, 130.0, 140.0,
            )  # fmt: skip
            assert body["supply"]["transfers_over_allowance"] == 1 and body["hazards"]["overdue"] == 1
            for quarter in ("2026-Q5", "2026-Q2x", "Q1-2026", "2026-Q3"):  # 2026-Q3 has not begun
                r = await viewer.get("/api/reports/quarterly", params={"quarter": quarter})
                assert r.status_code == 422 and "quarter" in r.json()["detail"], (quarter, r.text)
            r = await viewer.get("/api/reports/quarterly", params={"quarter": "2026-Q1", "format": "xlsx"})
            assert r.status_code == 200 and r.headers["content-type"].startswith(XLSX_TYPE)
            book = openpyxl.load_workbook(io.BytesIO(r.content))
            assert book.sheetnames == ["2026-Q1 各部门用电", "违规与罚款", "供电事件", "隐患"]
            r = await viewer.get("/api/reports/quarterly", params={"quarter": "2026-Q1", "format": "csv"})
            assert r.content.startswith(b"\xef\xbb\xbf")
            rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
            assert ["隐患"] in rows and ["供电事件"] in rows
