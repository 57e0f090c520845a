"""Timestamps of messages on some topics, as a separate MQTT client sees them (started by bench_latency).

    python -m tests.bench._observer PORT TOPIC...

Prints one JSON line per message, {"t": CLOCK_MONOTONIC seconds, "topic", "payload"}, after a first
{"ready": true} once subscribed. CLOCK_MONOTONIC is one clock for every process of the machine, so
the benchmark can set these times against its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiomqtt


async def observe(port: int, topics: list[str]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-observer-{time.monotonic_ns()}") as client:
        for topic in topics:
            await client.subscribe(topic, qos=0)
        print(json.dumps({"ready": True}), flush=True)
        async for message in client.messages:
            seen = time.monotonic()
            payload = bytes(message.payload or b"").decode(errors="replace")
            print(json.dumps({"t": seen, "topic": message.topic.value, "payload": payload}), flush=True)


def main(argv: list[str]) -> int:
    asyncio.run(observe(int(argv[0]), argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
