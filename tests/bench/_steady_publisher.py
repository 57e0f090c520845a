"""Publish a pre-generated stream at a steady rate, with probes (started by bench_steady on the load core).

    python -m tests.bench._steady_publisher CONFIG.json

Message i leaves at start + i / rate (QoS 1, at most WINDOW unacknowledged, as `_publisher`).
Every PROBE_S a probe goes out as well: a Shelly status of the probe device (a plug the stream
leaves silent) whose power is the probe's number (1, 2, 3, ... W), so an observer of the store
can tell which probe it sees. Reports each probe's send time (CLOCK_MONOTONIC, one clock for all
processes), how far the publisher fell behind its schedule, and the rate it achieved.
"""

from __future__ import annotations

import json
import pickle
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators import payloads
from tests.bench._common import report
from tests.bench._publisher import WINDOW

PROBE_S = 0.1


def probe_payload(number: int) -> bytes:
    """A probe: power `number` W, no energy counter (no counter step to judge)."""
    dev = {"on": True, "power_w": float(number), "voltage_v": 230.0, "energy_kwh": 0.0}
    status = payloads.shelly_status(dev, datetime.now(UTC), 40.0)
    del status["aenergy"]
    return json.dumps(status).encode()


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    messages: list[tuple[str, bytes]] = pickle.loads(Path(cfg["stream"]).read_bytes())
    rate: float = cfg["rate"]
    probe_topic: str = cfg["probe_topic"]
    window = threading.BoundedSemaphore(WINDOW)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-steady-{time.monotonic_ns()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = lambda *args: window.release()
    client.connect("127.0.0.1", cfg["port"])
    client.loop_start()
    probes: list[float] = []
    behind_max = 0.0
    start = time.monotonic() + 0.1
    sent = 0
    while sent < len(messages):
        now = time.monotonic()
        due = min(len(messages), int((now - start) * rate) + 1)
        if due - sent > 1:
            behind_max = max(behind_max, (due - sent) / rate)
        while sent < due:
            if not window.acquire(timeout=60):
                raise TimeoutError("no acknowledgement for 60 s")
            topic, payload = messages[sent]
            client.publish(topic, payload, qos=1)
            sent += 1
        if now >= start + len(probes) * PROBE_S:
            window.acquire(timeout=60)
            probes.append(time.monotonic())
            client.publish(probe_topic, probe_payload(len(probes)), qos=1)
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    client.disconnect()
    client.loop_stop()
    report({"messages": sent, "seconds": elapsed, "rate": sent / elapsed, "behind_max_s": behind_max, "probes": probes})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
