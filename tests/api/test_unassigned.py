"""Devices left to place: `GET /api/devices?assigned=false` and the dashboard's unassigned panel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.config.site import Site
from service.onboard.unassigned import placed_ids, unassigned
from simulators.runner import Simulation
from tests.api.conftest import SEED, SIM_START
from tests.harness import RunningService, eventually, running_service
from tests.simulators.conftest import run


@pytest.fixture
def site(demo_site: Site) -> Site:
    """The demo site with the 2119 door sensor listed but in no room."""
    rooms = [r.model_copy(update={"devices": [d for d in r.devices if d != "r2119-door"]}) for r in demo_site.rooms]
    return demo_site.model_copy(update={"rooms": rooms})


@pytest.fixture
async def svc(site: Site, tmp_path: Path) -> AsyncIterator[RunningService]:
    async with (
        Simulation(site, control_port=None, seed=SEED, start=SIM_START),
        running_service(site, tmp_path) as running,
    ):
        yield running


async def publish_strangers(port: int) -> None:
    """A Tasmota relay and a Zigbee button the site file does not know, announced as the real ones are."""
    config = json.loads((Path(__file__).parent.parent / "fixtures/tasmota-relay/discovery_config.json").read_text())
    config = {**config, "t": "r2120-light", "mac": "C8C9A3FFEE01"}
    code, out, err = await run(
        "mosquitto_pub", "-p", str(port), "-r", "-t", "tasmota/discovery/C8C9A3FFEE01/config", "-m", json.dumps(config)
    )
    assert code == 0, out + err
    button = {
        "ieee_address": "0x54ef441000a1b2c3",
        "type": "EndDevice",
        "friendly_name": "lobby-button",
        "model_id": "lumi.remote.b1acn02",
        "manufacturer": "LUMI",
        "definition": {"model": "WXKG13LM", "vendor": "Aqara", "exposes": [{"type": "enum", "property": "action"}]},
    }
    code, out, err = await run(
        "mosquitto_pub", "-p", str(port), "-r", "-t", "lab-zigbee/bridge/devices", "-m", json.dumps([button])
    )
    assert code == 0, out + err


async def test_unassigned_lists_unplaced_site_devices_and_strangers_on_the_broker(
    svc: RunningService, site: Site, fresh_mosquitto: Any
) -> None:
    async with svc.client("viewer") as client:

        async def door_listed() -> list[dict[str, Any]] | None:
            r = await client.get("/api/devices", params={"assigned": "false"})
            assert r.status_code == 200, r.text
            items: list[dict[str, Any]] = r.json()
            return items if items else None

        items = await eventually(door_listed)
        assert [(i["id"], i["in_site_file"], i["profile"]) for i in items] == [("r2119-door", True, "z2m-contact")]
        await publish_strangers(fresh_mosquitto.port)

        async def strangers() -> dict[str, dict[str, Any]] | None:
            r = await client.get("/api/devices", params={"assigned": "false"})
            by_id = {i["id"]: i for i in r.json()}
            return by_id if {"r2120-light", "lobby-button"} <= set(by_id) else None

        by_id = await eventually(strangers)
        assert set(by_id) == {"r2119-door", "r2120-light", "lobby-button"}
        light, button = by_id["r2120-light"], by_id["lobby-button"]
        assert (light["profile"], light["topic"], light["in_site_file"]) == ("tasmota-relay", "r2120-light", False)
        assert light["confidence"] == 0.95 and "Sonoff Pow R2" in light["said"]
        assert button["profile"] is None and button["topic"] == "lab-zigbee/lobby-button"
        assert button["said"] == "Aqara WXKG13LM (LUMI lumi.remote.b1acn02), exposes action"

        placed = (await client.get("/api/devices", params={"assigned": "true"})).json()
        everything = (await client.get("/api/devices")).json()
        assert {d["id"] for d in placed} == {d.id for d in site.devices} - {"r2119-door"}
        assert len(everything) == len(site.devices)
        assert set(everything[0]) == {"id", "profile", "driver", "online", "last_seen"}

        page = await client.get("/", params={"view": "rooms"})
        assert page.status_code == 200
        assert 'data-device="r2120-light"' in page.text and 'data-device="r2119-door"' in page.text


def test_placed_devices_are_those_in_rooms_or_in_a_supply_role(demo: Site) -> None:
    ids = placed_ids(demo)
    assert {"meter-grid-a", "genset-1", "ats-1-ctrl", "meter-dept-it", "r2119-door"} <= ids
    assert ids == {d.id for d in demo.devices}  # the demo site places every device
    assert unassigned(demo, [], {}) == []


@pytest.fixture
def demo(demo_site: Site) -> Site:
    return demo_site
