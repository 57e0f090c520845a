"""MQTT device messages/s through ingest -> rules -> alarms -> sinks on one core, vs a bare aiomqtt subscriber.

Set-up: a synthetic office floor of 300 MQTT devices (50 rooms: Zigbee2MQTT occupancy, AC, plug and
door contact, a Tasmota relay, a Shelly plug) and a stream of STREAM vendor-format messages
(tests/bench/_synthetic.py). Mosquitto and VictoriaMetrics run on the load core.

Each round creates persistent sessions (QoS 1 subscriptions, the driver's own topic list) for one
baseline and one candidate client, publishes the stream once at QoS 1 from a separate process
(the broker queues it for both sessions), then lets each drain its queue in a fresh process on
the measured core: the bare subscriber counting messages, then DriverHub + Core (SQLite store,
telemetry sink to VictoriaMetrics, MQTT notifier) until the core has taken the last reading.
Draining a queue measures the consumer alone: neither side can be held back by the publisher.
Best of ROUNDS interleaved rounds for each side.

    python -m tests.bench ingest
"""

from __future__ import annotations

import json
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from service.config.site import Site
from tests import servers
from tests.bench import _synthetic
from tests.bench._common import Figure, pinned_to_load, result_of, spawn, start_broker
from tests.conftest import write_site

STREAM = 60_000
ROOMS = 50
ROUNDS = 3
TARGET = 0.7
QOS = 1  # published at what the driver subscribes with: the broker keeps it all, in order, until acknowledged


def _disconnect(client: mqtt.Client, gone: threading.Event) -> None:
    """Disconnect and wait until the DISCONNECT left: a socket left open would keep the session
    online, and the broker would deliver the stream into it."""
    client.disconnect()
    if not gone.wait(10):
        raise TimeoutError("the broker connection did not close")
    client.loop_stop()


def make_session(port: int, client_id: str, topics: list[str]) -> None:
    """A persistent session subscribed to `topics` at QoS 1, left disconnected so the broker queues for it."""
    chunks = [topics[i : i + 100] for i in range(0, len(topics), 100)]
    subscribed, gone = threading.Event(), threading.Event()
    acked = 0

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int, codes: object, props: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(chunks):  # counted, not matched by mid: a SUBACK may beat subscribe() returning
            subscribed.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_subscribe = on_subscribe
    client.on_disconnect = lambda *args: gone.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for chunk in chunks:
        client.subscribe([(t, 1) for t in chunk])
    if not subscribed.wait(30):
        raise TimeoutError(f"{client_id}: subscriptions not acknowledged")
    _disconnect(client, gone)


def drop_session(port: int, client_id: str) -> None:
    """End a persistent session, so later streams are not queued for it."""
    connected, gone = threading.Event(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.on_connect = lambda *args: connected.set()
    client.on_disconnect = lambda *args: gone.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise TimeoutError(f"{client_id}: not connected")
    _disconnect(client, gone)


def drain(kind: str, cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One measured drain in a fresh process on the measured core."""
    path = workdir / f"{cfg['client_id']}.json"
    path.write_text(json.dumps(cfg))
    return result_of(spawn("_ingest_worker", kind, str(path), measured=True), timeout_s=300)


def measure(site: Site, port: int, influx_url: str, workdir: Path, rounds: int = ROUNDS) -> dict[str, list[Any]]:
    """Interleaved rounds of baseline and candidate drains of the same stream."""
    stream_path = workdir / "stream.pickle"
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "candidate": [], "publisher": []}
    for n in range(rounds):
        # The service's MQTT client id is wattkeeper-<site id>: one site id, hence one session, per round.
        round_site = site.model_copy(update={"site": site.site.model_copy(update={"id": f"bench-{n}"})})
        site_path = write_site(round_site, workdir / f"site-{n}.yaml")
        ids = {"baseline": f"bench-baseline-{n}", "candidate": f"wattkeeper-bench-{n}"}
        for client_id in ids.values():
            make_session(port, client_id, _synthetic.subscriptions(round_site, client_id))
        # Same seed each round, fresh device timestamps: the backlog is minutes old, never more.
        messages = _synthetic.stream(round_site, STREAM)
        stream_path.write_bytes(pickle.dumps(messages))
        results["publisher"].append(
            result_of(spawn("_publisher", str(port), str(QOS), str(stream_path), measured=False), timeout_s=300)
        )
        for kind, client_id in ids.items():
            run_dir = workdir / client_id
            run_dir.mkdir()
            cfg = {
                "port": port,
                "client_id": client_id,
                "topics": _synthetic.subscriptions(round_site, client_id),
                "messages": len(messages),
                "site": str(site_path),
                "workdir": str(run_dir),
                "influx_url": influx_url,
            }
            got = drain(kind, cfg, workdir)
            got["per_s"] = got["messages"] / got["seconds"]
            results[kind].append(got)
            drop_session(port, client_id)
            print(f"   round {n + 1} {kind}: {got['per_s']:,.0f} msg/s", flush=True)
    return results


def run() -> list[dict[str, Any]]:
    """Rows: MQTT messages/s through the whole core vs a counting subscriber (target >= 0.7x)."""
    with tempfile.TemporaryDirectory() as tmp, pinned_to_load():
        work = Path(tmp)
        broker = start_broker(work / "mosquitto")
        vm = servers.start_victoria(work / "vm")
        try:
            site = _synthetic.ingest_site(broker.url, ROOMS)
            results = measure(site, broker.port, vm.url, work)
        finally:
            vm.stop()
            broker.server.stop()
    best = {k: max(r["per_s"] for r in results[k]) for k in ("baseline", "candidate")}
    last = results["candidate"][-1]
    print(
        f"   candidate: {last['readings']:,} readings, {last['evaluations']:,} evaluations, "
        f"{last['rejects']} rejects, {last['rejected_deltas']} rejected deltas; "
        f"publisher {max(r['messages'] / r['seconds'] for r in results['publisher']):,.0f} msg/s",
        flush=True,
    )
    return [Figure("mqtt_ingest_msgs_per_s", best["candidate"], "msg/s", best["baseline"], TARGET, digits=0).row()]


if __name__ == "__main__":
    for r in run():
        print(r)
