"""Supply-side equipment on real servers: admin-only commands with a reason (GenComm over Modbus),
generator_not_auto / ats_not_auto from the controllers' own panels, critical_load_off when a
critical plug is switched off over its own protocol by someone else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiomqtt

from service.alarms.engine import DEFAULT_CONFIG, AlarmTypeConfig
from service.alarms.rules import AlarmType
from service.config.site import Site
from service.store.db import AuditEntry
from tests.api.test_sweeps import simulation
from tests.harness import RunningService, eventually, running_service

# The engine's on-delays are tested with injected time (tests/service/test_supply_control.py);
# here the alarms raise as soon as the service sees the condition.
AT_ONCE = {
    **DEFAULT_CONFIG,
    AlarmType.generator_not_auto: AlarmTypeConfig(on_delay_s=0.0, off_delay_s=0.0),
    AlarmType.ats_not_auto: AlarmTypeConfig(on_delay_s=0.0, off_delay_s=0.0),
    AlarmType.critical_load_off: AlarmTypeConfig(on_delay_s=0.0, off_delay_s=0.0),
}


async def command(svc: RunningService, device: str, role: str, **body: Any) -> Any:
    async with svc.client(role) as client:
        return await client.post(f"/api/devices/{device}/commands", json=body)


async def audit_of(svc: RunningService, device: str) -> list[AuditEntry]:
    return list(reversed(await svc.services.store.list_audit(device=device)))


async def alarm(svc: RunningService, kind: AlarmType, subject: str, *, active: bool) -> dict[str, Any] | None:
    async with svc.client("viewer") as client:
        r = await client.get("/api/alarms", params={"state": "all", "type": kind.value})
    assert r.status_code == 200, r.text
    for a in r.json():
        if a["subject"] == subject and (a["state"] in ("active_unacked", "active_acked")) is active:
            return dict(a)
    return None


async def _online(svc: RunningService, device: str) -> bool | None:
    async with svc.client("viewer") as client:
        r = await client.get("/api/devices")
    return next((d["online"] for d in r.json() if d["id"] == device), None) or None


async def test_supply_commands_need_an_admin_and_a_reason(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path) as svc, simulation(demo_site) as sim:
        r = await command(svc, "genset-1", "operator", command="control_key", value="manual", reason="test")
        assert r.status_code == 403, r.text
        assert r.json()["status"] == "refused" and "only an admin" in r.json()["detail"]
        r = await command(svc, "ats-1-ctrl", "operator", command="mode", value=0)
        assert r.status_code == 403, r.text  # the ATyS mode is read-only; a read-only point is refused too
        assert sim.state()["generators"]["gen-1"]["mode"] == "auto"

        for reason in (None, "", "  "):
            body = {"command": "control_key", "value": "stop"} | ({} if reason is None else {"reason": reason})
            r = await command(svc, "genset-1", "admin", **body)
            assert r.status_code == 422, r.text
            assert "reason" in r.json()["detail"]
        assert sim.state()["generators"]["gen-1"]["mode"] == "auto"

        # the service started before the simulators: wait until its driver reaches the controller
        await eventually(lambda: _online(svc, "genset-1"), 30)
        r = await command(svc, "genset-1", "admin", command="key", value="manual", reason="monthly test run")
        assert (r.status_code, r.json()["status"]) == (200, "confirmed"), r.text
        assert sim.state()["generators"]["gen-1"]["mode"] == "manual"
        r = await command(svc, "genset-1", "admin", command="key", value="auto", reason="test run over")
        assert (r.status_code, r.json()["status"]) == (200, "confirmed"), r.text
        assert sim.state()["generators"]["gen-1"]["mode"] == "auto"

        audit = await audit_of(svc, "genset-1")
        assert [(a.result, a.new) for a in audit] == [("refused", "manual"), ("confirmed", 35702), ("confirmed", 35701)]
        assert "only an admin" in audit[0].detail
        assert audit[1].detail.startswith("reason: monthly test run")
        assert audit[2].detail.startswith("reason: test run over")
        assert audit[0].who != audit[1].who == audit[2].who  # the operator's key, then the admin's


async def test_generator_and_switch_left_in_manual_raise_and_clear(demo_site: Site, tmp_path: Path) -> None:
    async with (
        running_service(demo_site, tmp_path, alarm_config=AT_ONCE) as svc,
        simulation(demo_site) as sim,
    ):
        sim.fault("generator_manual", "gen-1")
        sim.fault("ats_manual", "ats-1")
        raised = await eventually(lambda: alarm(svc, AlarmType.generator_not_auto, "gen-1", active=True))
        assert (raised["severity"], raised["value"]) == ("high", "manual")
        assert "will not start by itself" in raised["message"]
        switch = await eventually(lambda: alarm(svc, AlarmType.ats_not_auto, "ats-1", active=True))
        assert (switch["severity"], switch["value"]) == ("high", "manual")
        async with svc.client("viewer") as client:  # the dashboard's supply view lists both
            page = (await client.get("/ui/supply", params={"lang": "en"})).text
        assert "generator not in auto" in page and "transfer switch not in auto" in page

        sim.clear_faults()  # both panels back to auto
        assert sim.state()["generators"]["gen-1"]["mode"] == "auto"
        await eventually(lambda: alarm(svc, AlarmType.generator_not_auto, "gen-1", active=False))
        await eventually(lambda: alarm(svc, AlarmType.ats_not_auto, "ats-1", active=False))


async def test_a_critical_plug_switched_off_by_someone_else_raises_critical_load_off(
    demo_site: Site, tmp_path: Path
) -> None:
    async with (
        running_service(demo_site, tmp_path, alarm_config=AT_ONCE) as svc,
        simulation(demo_site) as sim,
    ):
        assert sim.state()["devices"]["srv1-ups"]["on"] is True
        await eventually(lambda: _is_on(svc))
        assert await alarm(svc, AlarmType.critical_load_off, "srv1-ups", active=True) is None

        # Someone on the broker (not wattkeeper) sends the Shelly its own JSON-RPC switch-off.
        host, port = demo_site.mqtt.url.removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(host, int(port), identifier="someone-else") as c:
            rpc = {"id": 7, "src": "someone-else", "method": "Switch.Set", "params": {"id": 0, "on": False}}
            await c.publish("shellyplus-srv1-ups/rpc", json.dumps(rpc), qos=1)
        raised = await eventually(lambda: alarm(svc, AlarmType.critical_load_off, "srv1-ups", active=True))
        assert sim.state()["devices"]["srv1-ups"]["on"] is False
        assert (raised["severity"], raised["value"]) == ("critical", "off")
        assert "without a command from wattkeeper" in raised["message"]
        assert await audit_of(svc, "srv1-ups") == []  # wattkeeper sent nothing


async def _is_on(svc: RunningService) -> bool:
    seen = svc.services.core.state.point("srv1-ups", "on", svc.services.clock.now())
    return seen is not None and seen.value is True
