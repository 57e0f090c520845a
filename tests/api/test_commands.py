"""POST /api/devices/{id}/commands: verified commands to simulated devices, the allow-list, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.config.site import Site
from service.store.db import AuditEntry
from tests.api.test_sweeps import service_sees, simulation, switch_everything_on
from tests.harness import RunningService, running_service


async def post(
    svc: RunningService, device: str, command: str, value: Any, role: str = "operator", reason: str | None = None
) -> Any:
    body = {"command": command, "value": value} | ({} if reason is None else {"reason": reason})
    async with svc.client(role) as client:
        return await client.post(f"/api/devices/{device}/commands", json=body)


async def audit_of(svc: RunningService, device: str) -> list[AuditEntry]:
    return list(reversed(await svc.services.store.list_audit(device=device)))


async def test_commands_reach_the_devices_and_are_audited(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path) as svc, simulation(demo_site) as sim:
        switch_everything_on(sim)
        await service_sees(svc.services, sim, ["r2119-light", "r2119-ac", "r2119-plug"])

        r = await post(svc, "r2119-light", "on", False)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "confirmed"
        assert r.json()["observed"] is False
        assert sim.state()["devices"]["r2119-light"]["on"] is False

        r = await post(svc, "r2119-light", "switch", "ON")  # alias and a word value
        assert (r.status_code, r.json()["status"], r.json()["observed"]) == (200, "confirmed", True)
        assert sim.state()["devices"]["r2119-light"]["on"] is True

        r = await post(svc, "r2119-ac", "mode", "off")
        assert (r.status_code, r.json()["point"], r.json()["observed"]) == (200, "system_mode", "off")
        r = await post(svc, "r2119-ac", "cooling_setpoint", 27)
        assert (r.status_code, r.json()["status"]) == (200, "confirmed")
        assert sim.state()["devices"]["r2119-ac"]["system_mode"] == "off"
        assert sim.state()["devices"]["r2119-ac"]["cooling_setpoint"] == 27

        r = await post(svc, "r2119-plug", "on", False)  # Shelly JSON-RPC
        assert (r.status_code, r.json()["status"]) == (200, "confirmed")
        assert sim.state()["devices"]["r2119-plug"]["on"] is False

        r = await post(svc, "genset-1", "key", "auto", "admin", "check")  # GenComm control key over Modbus
        assert (r.status_code, r.json()["status"], r.json()["requested"]) == (200, "confirmed", 35701)

        light = await audit_of(svc, "r2119-light")
        operator = svc.keys["operator"]
        assert [(a.point, a.old, a.new, a.result, a.job) for a in light] == [
            ("on", True, False, "confirmed", None),
            ("on", False, True, "confirmed", None),
        ]
        assert all(a.who.startswith("key:") and a.who != "scheduler" for a in light)
        assert operator not in light[0].who  # the key's public id, never the key
        async with svc.client("viewer") as client:
            metrics = (await client.get("/metrics")).text
        assert 'wattkeeper_commands_total{status="confirmed"} 6.0' in metrics


async def test_refusals_and_bad_requests(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path) as svc, simulation(demo_site) as sim:
        switch_everything_on(sim)
        before = sim.state()["devices"]
        for device, command, value, why in [
            ("srv1-ups", "on", False, "role critical"),
            ("srv1-ac", "system_mode", "off", "role critical"),
            ("srv1-light", "on", False, "server room srv1"),
            ("r2119-light", "power", 0, "read-only"),
        ]:
            r = await post(svc, device, command, value)
            assert r.status_code == 403, (device, r.text)
            assert r.json()["status"] == "refused"
            assert why in r.json()["detail"]
        assert sim.state()["devices"] == before
        refused = await audit_of(svc, "srv1-ups")
        assert [(a.result, a.new) for a in refused] == [("refused", False)]

        r = await post(svc, "nope", "on", False)
        assert r.status_code == 404
        for device, command, value in [
            ("r2119-light", "volume", 3),
            ("r2119-light", "on", "maybe"),
            ("r2119-ac", "system_mode", "turbo"),
            ("r2119-ac", "cooling_setpoint", 40),
            ("genset-1", "control_key", "explode"),
        ]:
            r = await post(svc, device, command, value, "admin", "check")
            assert r.status_code == 422, (device, command, r.text)
            assert r.json()["detail"]
        assert await audit_of(svc, "r2119-ac") == []  # malformed commands never reach the audit

        r = await post(svc, "r2119-light", "on", False, role="viewer")
        assert r.status_code == 403
        assert "operator" in r.json()["detail"]
        async with svc.client("operator") as client:
            r = await client.post("/api/devices/r2119-light/commands", json={"command": "on"})
            assert r.status_code == 422


async def test_without_drivers_commands_are_refused_with_409(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        r = await post(svc, "r2119-light", "on", False)
        assert r.status_code == 409
        assert r.json()["status"] == "refused"
        assert "not running" in r.json()["detail"]
