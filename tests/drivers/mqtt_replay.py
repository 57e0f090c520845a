"""Replay recorded MQTT payloads through the driver and compare its output reading for reading.

The fixture (tests/fixtures/mqtt-replay/stream.jsonl.gz) holds vendor-format payloads of the
benchmark's synthetic office floor (tests/bench/_synthetic.py, 10 rooms), a few retained,
oversized and malformed ones, each with the time it was received, and the events the driver
emitted for it when the fixture was recorded: every reading's device, point, value (with its
type), unit, timestamp and quality, and every online/offline status. Recorded from the driver
before its hot path was reworked (issue 23), so any change to the output shows up as a diff:

    python -m tests.drivers.mqtt_replay record    # only when the output is meant to change
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drivers.base import DriverSettings
from drivers.hub import DriverHub
from drivers.types import DeviceStatus, Reading

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "mqtt-replay" / "stream.jsonl.gz"
ROOMS = 10
MESSAGES = 2_000
CLIENT_ID = "wattkeeper-replay"


def event_row(event: Reading | DeviceStatus) -> list[Any]:
    """One emitted event as plain JSON, the value's Python type included (1 and 1.0 differ)."""
    if isinstance(event, Reading):
        return [
            "reading",
            event.device,
            event.point,
            type(event.value).__name__,
            event.value,
            event.unit,
            event.ts.isoformat(),
            str(event.quality),
        ]
    return ["status", event.device, event.online, event.ts.isoformat(), event.reason]


def _site() -> Any:
    from tests.bench import _synthetic

    return _synthetic.ingest_site("mqtt://127.0.0.1:1", ROOMS)


def replay(messages: Sequence[dict[str, Any]]) -> Iterator[list[list[Any]]]:
    """The driver's events for each message (topic, payload, retained, received) in turn."""
    site = _site()
    now = [datetime.fromtimestamp(0, UTC)]
    emitted: list[list[Any]] = []
    hub = DriverHub(
        site.devices,
        mqtt_url="mqtt://127.0.0.1:1",
        emit=lambda batch: emitted.extend(event_row(e) for e in batch),
        client_id=CLIENT_ID,
        clock=lambda: now[0],
        settings=DriverSettings(device_timezone=site.site.timezone),
    )
    driver = hub._drivers["mqtt"]
    for m in messages:
        now[0] = datetime.fromisoformat(m["received"])
        emitted.clear()
        driver._dispatch(m["topic"], m["payload"].encode("latin-1"), m["retained"])  # type: ignore[attr-defined]
        yield list(emitted)


def load() -> list[dict[str, Any]]:
    """The recorded messages with the events recorded for each."""
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _messages() -> list[dict[str, Any]]:
    from tests.bench import _synthetic

    site = _site()
    stream = _synthetic.stream(site, MESSAGES, seed=23)
    start = datetime.now(UTC) - timedelta(seconds=MESSAGES * _synthetic.STEP_S)
    rows = [(t, p, False) for t, p in stream]
    plug = _synthetic.sentinel_device(site)
    z2m = next(d for d in site.devices if d.profile == "z2m-plug")
    rows[100:100] = [(t, p, True) for t, p in stream[:20]]  # retained replays after live messages
    rows[500:500] = [
        (f"zigbee2mqtt/{z2m.id}", b"{not json", False),
        (f"zigbee2mqtt/{z2m.id}", b'{"power": "lots", "state": "ON"}', False),
        (f"zigbee2mqtt/{z2m.id}", b'{"power": -50000, "energy": 1.5}', False),
        (f"{plug.topic}/status/switch:0", b"x" * 70_000, False),
        (f"zigbee2mqtt/{z2m.id}", b'{"power": null, "state": "OFF"}', False),
    ]
    return [
        {
            "topic": t,
            "payload": p.decode("latin-1"),
            "retained": r,
            "received": (start + timedelta(seconds=i * _synthetic.STEP_S)).isoformat(),
        }
        for i, (t, p, r) in enumerate(rows)
    ]


def record() -> int:
    """Write the fixture from the current driver."""
    messages = _messages()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(FIXTURE, "wt", encoding="utf-8", compresslevel=9) as f:
        for m, events in zip(messages, replay(messages), strict=True):
            f.write(json.dumps({**m, "events": events}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(record() if sys.argv[1:] == ["record"] else 2)
