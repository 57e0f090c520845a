"""Room overrides: capped, listed, audited, exempt from sweeps (not from office alarms) until they expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from service.clock import ManualClock
from service.config.site import RoomThresholds, Site
from service.control.scheduler import OVERRIDES_ID, SWEEP_ID
from tests.api.test_sweeps import (
    actions,
    service_sees,
    sim_on,
    simulation,
    sweep,
    switch_everything_on,
    switchable,
)
from tests.harness import running_service

TZ = ZoneInfo("Asia/Shanghai")
EVENING = datetime(2026, 3, 2, 18, 45, tzinfo=TZ)


async def test_override_keeps_its_room_on_until_it_expires(demo_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(EVENING)
    async with running_service(demo_site, tmp_path, clock=clock) as svc, simulation(demo_site) as sim:
        switch_everything_on(sim)
        await service_sees(svc.services, sim)
        async with svc.client("operator") as client:
            r = await client.post(
                "/api/overrides",
                json={"room": "r2119", "until": (EVENING + timedelta(hours=1)).isoformat(), "reason": "board meeting"},
            )
            assert r.status_code == 201, r.text
            override = r.json()
            assert (override["room"], override["active"], override["capped"]) == ("r2119", True, False)
            assert svc.services.core.overrides == {"r2119": EVENING + timedelta(hours=1)}
            rooms = {x["id"]: x for x in (await client.get("/api/rooms")).json()}
            assert rooms["r2119"]["override_until"] is not None

            first = await sweep(client)
            got = actions(first)
            assert {got[d] for d in switchable(demo_site, ["r2119"])} == {"skipped_override"}
            state = sim_on(sim)
            assert all(state[d] is True for d in switchable(demo_site, ["r2119"]))
            others = set(switchable(demo_site)) - set(switchable(demo_site, ["r2119"]))
            assert {d for d in others if state[d] is not False} == set()

            # an hour and a minute later the override has run out by itself
            clock.advance(3660)
            r = await client.post(f"/api/schedules/{OVERRIDES_ID}/run")
            assert r.json()["active"] == []
            assert svc.services.core.overrides == {}
            listed = (await client.get("/api/overrides")).json()
            assert [(o["id"], o["active"]) for o in listed] == [(override["id"], False)]

            second = await sweep(client)
            assert {actions(second)[d] for d in switchable(demo_site, ["r2119"])} == {"switched_off"}
            assert all(sim_on(sim)[d] is False for d in switchable(demo_site, ["r2119"]))

        audit = [a for a in reversed(await svc.services.store.list_audit()) if a.device is None]
        assert [(a.result, a.who.startswith("key:"), a.job) for a in audit] == [
            ("override", True, None),
            ("override_expired", False, OVERRIDES_ID),
        ]
        assert audit[0].new == {
            "room": "r2119",
            "until": (EVENING + timedelta(hours=1)).isoformat(),
            "reason": "board meeting",
        }


async def test_override_requests_checked_and_capped(demo_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(EVENING)
    async with running_service(demo_site, tmp_path, clock=clock, drivers=False) as svc:
        async with svc.client("operator") as client:
            r = await client.post(
                "/api/overrides", json={"room": "r3101", "until": (EVENING + timedelta(hours=5)).isoformat()}
            )
            assert r.status_code == 201
            body = r.json()
            assert body["capped"] is True
            assert datetime.fromisoformat(body["until"]) == EVENING + timedelta(hours=2)  # override_max_h
            assert datetime.fromisoformat(body["requested_until"]) == EVENING + timedelta(hours=5)

            for payload, code in [
                ({"room": "nowhere", "until": (EVENING + timedelta(hours=1)).isoformat()}, 404),
                ({"room": "r3101", "until": (EVENING - timedelta(minutes=1)).isoformat()}, 422),
                ({"room": "r3101", "until": "2026-03-02T20:00:00"}, 422),  # no time zone
                ({"room": "r3101"}, 422),
            ]:
                r = await client.post("/api/overrides", json=payload)
                assert r.status_code == code, (payload, r.text)

            r = await client.delete(f"/api/overrides/{body['id']}")
            assert r.status_code == 204
            assert svc.services.core.overrides == {}
            assert (await client.delete(f"/api/overrides/{body['id']}")).status_code == 404
            assert (await client.get("/api/overrides", params={"active": True})).json() == []

        async with svc.client("viewer") as client:
            r = await client.post(
                "/api/overrides", json={"room": "r3101", "until": (EVENING + timedelta(hours=1)).isoformat()}
            )
            assert r.status_code == 403
            assert (await client.get("/api/overrides")).status_code == 200
            schedules = {s["id"]: s for s in (await client.get("/api/schedules")).json()}
            assert schedules[SWEEP_ID]["policy"] == {"occupied_rooms": "skip"}
            assert schedules[SWEEP_ID]["trigger"]["times"] == ["18:30", "20:00", "22:00"]
            assert (await client.post(f"/api/schedules/{SWEEP_ID}/run")).status_code == 403

        policy = {"occupied_rooms": "notify_then_off"}
        async with svc.client("operator") as client:
            assert (await client.patch(f"/api/schedules/{SWEEP_ID}", json=policy)).status_code == 403
            assert (await client.post("/api/schedules/nope/run")).status_code == 404
        async with svc.client("admin") as client:
            assert (await client.patch(f"/api/schedules/{SWEEP_ID}", json=policy)).status_code == 200
            assert (await client.patch(f"/api/schedules/{SWEEP_ID}", json={"occupied_rooms": "x"})).status_code == 422
            assert (await client.patch("/api/schedules/monthly-report", json=policy)).status_code == 404
            schedules = {s["id"]: s for s in (await client.get("/api/schedules")).json()}
            assert schedules[SWEEP_ID]["policy"] == policy
            run = (await client.post(f"/api/schedules/{SWEEP_ID}/run")).json()
            assert run["policy"] == "notify_then_off" and run["who"].startswith("key:")
            [entry] = (await client.get(f"/api/schedules/{SWEEP_ID}/history")).json()
            assert (entry["trigger"], entry["job"]) == ("manual", f"{SWEEP_ID}:manual")


async def test_a_rooms_own_override_max_h_caps_its_overrides(demo_site: Site, tmp_path: Path) -> None:
    own = RoomThresholds(override_max_h=1)
    rooms = [r.model_copy(update={"thresholds": own}) if r.id == "r3101" else r for r in demo_site.rooms]
    site = demo_site.model_copy(update={"rooms": rooms})
    async with running_service(site, tmp_path, clock=ManualClock(EVENING), drivers=False) as svc:
        for room, hours in [("r3101", 1), ("r3102", 2)]:  # the room's own cap, the site's
            async with svc.client("operator") as client:
                r = await client.post(
                    "/api/overrides", json={"room": room, "until": (EVENING + timedelta(hours=5)).isoformat()}
                )
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["capped"] is True
            assert datetime.fromisoformat(body["until"]) == EVENING + timedelta(hours=hours)
