"""DriverHub: configuration checks, the refusal rules, and the service's own Device model."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.base import cancel_and_wait
from drivers.hub import DRIVERS, DriverHub, EventStream
from drivers.types import DeviceStatus, Reading, Value
from service.config.site import load_site
from tests.drivers.helpers import Dev, modbus_dev, mqtt_dev


def nothing(batch: object) -> None:
    """An emit target that drops everything."""


def test_registry_is_explicit() -> None:
    assert set(DRIVERS) == {"modbus", "mqtt"}


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ([modbus_dev("a", "sdm630", 1502), modbus_dev("a", "sdm120", 1503)], "appears twice"),
        ([Dev("a", "bacnet", "sdm630", host="h", port=1)], "unknown driver 'bacnet'"),
        ([Dev("a", "mqtt", "sdm630", topic="t")], "profile 'sdm630' is for modbus, not mqtt"),
        ([Dev("a", "modbus", "sdm630")], "needs host and port"),
        ([Dev("a", "mqtt", "z2m-plug")], "needs a topic"),
    ],
)
def test_configuration_errors(devices: list[Dev], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriverHub(devices, mqtt_url="mqtt://127.0.0.1:1", emit=nothing)


def test_service_site_devices_are_accepted(demo_site_path: Path) -> None:
    site = load_site(demo_site_path)
    hub = DriverHub(site.devices, mqtt_url=site.mqtt.url, emit=nothing)
    health = hub.health()
    assert set(health) == {d.id for d in site.devices}
    assert not any(h.online for h in health.values())
    assert hub.readings_total == 0


async def test_refusals_never_raise() -> None:
    hub = DriverHub(
        [modbus_dev("meter", "sdm630", 1502), mqtt_dev("ac", "z2m-thermostat", "zigbee2mqtt/ac")],
        mqtt_url="mqtt://127.0.0.1:1",
        emit=nothing,
    )
    cases: dict[tuple[str, str, Value], str] = {
        ("ghost", "on", True): "unknown device 'ghost'",
        ("meter", "volume", 3): "profile 'sdm630' has no point 'volume'",
        ("meter", "power", 0): "'power' of profile 'sdm630' is read-only",
        ("ac", "local_temperature", 20): "read-only",
        ("ac", "system_mode", "cool"): "drivers are not running",
    }
    for (device, point, value), why in cases.items():
        result = await hub.command(device, point, value)
        assert result.status == "refused", (device, point)
        assert why in result.detail
        assert (result.device, result.point, result.requested) == (device, point, value)


async def test_event_stream_iterates_batches() -> None:
    stream = EventStream(maxsize=2)
    now = datetime.now(UTC)
    first = [DeviceStatus(device="a", online=True, ts=now)]
    second = [Reading(device="a", point="p", value=1.0, unit="W", ts=now)]
    stream.put(first)
    stream.put(second)
    stream.put(second)  # the reader is behind: dropped, counted
    assert stream.dropped == 1
    got = [await anext(stream), await anext(stream)]
    assert got == [tuple(first), tuple(second)]


async def test_stop_survives_a_task_that_swallows_cancellation() -> None:
    """Python 3.11's wait_for can lose a cancel that coincides with an answer; stop() must still end."""
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                rounds += 1
                if rounds == 1:
                    continue  # as if the answer had won the race
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 5)
    assert task.cancelled() and rounds == 2
