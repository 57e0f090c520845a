"""Publish a pre-generated stream into the broker (started by bench_ingest on the load cores).

    python -m tests.bench._publisher PORT QOS STREAM.pickle

Publishes at QOS with at most WINDOW messages unacknowledged (paho's message ids are 16 bits: with
more than 65,535 QoS 1 messages queued in the client at once, ids wrap and paho drops the older
message of each reused id), then one QoS 1 marker on a topic nobody reads: the broker handles one
connection's packets in order, so once the marker is acknowledged
every persistent session subscribed to the stream's topics holds all of it.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.bench._common import report

# Unacknowledged QoS 1 messages at most; far below paho's 65,535 message ids, above the 1,000 in flight.
WINDOW = 10_000


def main(argv: list[str]) -> int:
    port, qos, path = int(argv[0]), int(argv[1]), Path(argv[2])
    messages: list[tuple[str, bytes]] = pickle.loads(path.read_bytes())
    done = threading.Event()
    window = threading.BoundedSemaphore(WINDOW)
    acked = 0

    def on_publish(client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        nonlocal acked
        acked += 1
        window.release()
        if acked == len(messages) + 1:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{time.monotonic_ns()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    began = time.perf_counter()
    for topic, payload in messages:
        if not window.acquire(timeout=60):
            raise TimeoutError(f"no acknowledgement for 60 s ({acked} of {len(messages)} acknowledged)")
        client.publish(topic, payload, qos=qos)
    window.acquire(timeout=60)
    client.publish("bench/marker", b"", qos=1)
    if not done.wait(300):
        raise TimeoutError(f"only {acked} of {len(messages)} messages acknowledged")
    elapsed = time.perf_counter() - began
    client.disconnect()
    client.loop_stop()
    report({"messages": len(messages), "seconds": elapsed})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
