"""Just enough device firmware, per convention, to obey commands and report state over a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiomqtt


@dataclass
class FakeDevice:
    """One device: its convention, site topic and state (Zigbee2MQTT keys, or Tasmota/Shelly output)."""

    convention: str
    topic: str
    state: dict[str, Any] = field(default_factory=dict)
    silent: bool = False  # receives commands but never answers


class FakeDevices:
    """Runs the fake devices on one MQTT connection; `received` logs every command topic and payload."""

    def __init__(self, port: int, devices: list[FakeDevice]) -> None:
        self.port = port
        self.devices = devices
        self.received: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._client: aiomqtt.Client | None = None

    def _topics(self) -> list[str]:
        out = []
        for d in self.devices:
            if d.convention == "zigbee2mqtt":
                out += [f"{d.topic}/set", f"{d.topic}/get"]
            elif d.convention == "tasmota":
                out.append(f"cmnd/{d.topic}/POWER")
            else:
                out.append(f"{d.topic}/rpc")
        return out

    async def __aenter__(self) -> FakeDevices:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"fake-{uuid.uuid4().hex[:8]}") as client:
            self._client = client
            await client.subscribe([(t, 1) for t in self._topics()])
            self._ready.set()
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                self.received.append((msg.topic.value, payload))
                await self._obey(client, msg.topic.value, payload)

    async def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        """Publish as the device would."""
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, retain=retain)

    async def report(self, device: FakeDevice) -> None:
        """Publish the device's full state the way its convention does."""
        if device.convention == "zigbee2mqtt":
            await self.publish(device.topic, json.dumps(device.state))
        elif device.convention == "tasmota":
            word = "ON" if device.state.get("on") else "OFF"
            await self.publish(f"stat/{device.topic}/RESULT", json.dumps({"POWER": word}))
            await self.publish(f"stat/{device.topic}/POWER", word)
        else:
            await self.publish(f"{device.topic}/status/switch:0", json.dumps(self._shelly_status(device)))

    @staticmethod
    def _shelly_status(device: FakeDevice) -> dict[str, Any]:
        on = bool(device.state.get("on"))
        return {
            "id": 0,
            "source": "MQTT",
            "output": on,
            "apower": 40.0 if on else 0.0,
            "voltage": 230.1,
            "aenergy": {"total": 1500.0},
        }

    async def _obey(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        for d in self.devices:
            if d.silent:
                continue
            if d.convention == "zigbee2mqtt" and topic == f"{d.topic}/set":
                d.state.update(json.loads(payload))
                await self.report(d)
            elif d.convention == "zigbee2mqtt" and topic == f"{d.topic}/get":
                await self.report(d)
            elif d.convention == "tasmota" and topic == f"cmnd/{d.topic}/POWER":
                if payload:
                    d.state["on"] = payload.decode().upper() == "ON"
                await self.report(d)
            elif d.convention == "shelly-gen2" and topic == f"{d.topic}/rpc":
                await self._rpc(client, d, json.loads(payload))

    async def _rpc(self, client: aiomqtt.Client, d: FakeDevice, request: dict[str, Any]) -> None:
        was_on = bool(d.state.get("on"))
        if request["method"] == "Switch.Set":
            d.state["on"] = bool(request["params"]["on"])
            result: dict[str, Any] = {"was_on": was_on}
        else:
            result = self._shelly_status(d)
        reply = {"id": request["id"], "src": d.topic, "dst": request["src"], "result": result}
        await client.publish(f"{request['src']}/rpc", json.dumps(reply), qos=1)
        if request["method"] == "Switch.Set" and was_on != d.state["on"]:
            await self.report(d)  # a real Shelly publishes status only when something changed
