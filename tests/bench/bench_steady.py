"""MQTT at the steady rates buildings send: CPU per message and store visibility, and the highest rate held.

Steady rows: the synthetic office floor (tests/bench/_synthetic.py, 50 rooms, 300 devices) publishes
at RATES messages/s for DURATION_S (QoS 1, paced, from a separate process on the load core), and
the measured process on the measured core takes it:

- baseline: a bare aiomqtt subscriber counting messages (same session options, same topics);
- candidate: the whole service as `wattkeeper serve` assembles it, telemetry into VictoriaMetrics.

Each measures CPU time (all its threads) over the run less WARMUP_S and 2 s at the end: CPU µs per
message and % of one core. Store visibility: every 0.1 s the publisher also sends a probe, a Shelly
status of a plug the stream leaves silent, whose power is the probe's number; an observer on the
load core asks VictoriaMetrics every 20 ms (`/internal/force_flush`, then `/api/v1/export` with an
explicit `end`) and notes when each probe's value appears. Visibility = that moment less the probe's
publish time (CLOCK_MONOTONIC, one clock for both processes), so the observer's 20 ms cadence and
the force_flush are part of the figure.

Capacity row: the steady 2,000 msg/s run, then the candidate alone at CAPACITY_RATES, each for
DURATION_S; a rate is held when the process took at least 99 % of what was published in its
window, no probe went missing, and the probes' visibility in the last third of the run is not
more than 0.5 s above the first third (a growing backlog). The figure is the highest rate held
before the first one that was not.

    python -m tests.bench steady                      # the whole thing (about 12 minutes)
    WATTKEEPER_BENCH_STEADY_S=15 python -m tests.bench steady   # shorter runs while developing
    WATTKEEPER_BENCH_CAPACITY=0 ...                   # steady rows only
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.config.site import Site
from tests import servers
from tests.bench import _synthetic
from tests.bench._common import Figure, percentile, pinned_to_load, result_of, spawn, start_broker
from tests.bench.bench_ingest import drop_session
from tests.conftest import write_site

RATES = (500, 2000)
CAPACITY_BELOW = (1500, 1000, 500)  # when 2,000 msg/s was not held
CAPACITY_RATES = (3000, 4000, 5000, 6500, 8000)  # after the steady 2,000 msg/s run, which counts as the first step
DURATION_S = float(os.environ.get("WATTKEEPER_BENCH_STEADY_S", "60"))
CAPACITY = os.environ.get("WATTKEEPER_BENCH_CAPACITY", "1") != "0"
WARMUP_S = 3.0
ROOMS = 50
CPU_TARGET_US = 100.0  # at 2,000 msg/s
VISIBILITY_TARGET_MS = 250.0


class Observer(threading.Thread):
    """Asks VictoriaMetrics for the probe series every 20 ms; the first time each value is seen."""

    def __init__(self, vm_url: str, site_id: str, device: str) -> None:
        super().__init__(daemon=True)
        self.url = vm_url
        self.match = f'telemetry_value{{site="{site_id}",device="{device}",point="power"}}'
        self.seen: dict[int, float] = {}
        self.stopping = threading.Event()
        self.errors = 0
        self.cycles: list[float] = []  # seconds each ask took (force_flush and export): part of the figure

    def run(self) -> None:
        start_s = int(time.time()) - 5
        while not self.stopping.wait(0.02):
            asked = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5):
                    pass
                query = urllib.parse.urlencode(
                    {"match[]": self.match, "start": str(start_s), "end": str(int(time.time()) + 60)}
                )
                with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                self.errors += 1
                continue
            now = time.monotonic()
            self.cycles.append(now - asked)
            for row in body.splitlines():
                for value in json.loads(row)["values"]:
                    self.seen.setdefault(round(value), now)


def one_run(kind: str, rate: int, site: Site, port: int, vm_url: str, work: Path, tag: str) -> dict[str, Any]:
    """One steady run of `kind` at `rate`; the worker's figures, the publisher's and (candidate) the probes'."""
    site_id = f"steady-{tag}"
    run_site = site.model_copy(update={"site": site.site.model_copy(update={"id": site_id})})
    run_dir = work / site_id
    run_dir.mkdir()
    site_path = write_site(run_site, run_dir / "site.yaml")
    client_id = f"wattkeeper-{site_id}" if kind == "candidate" else f"bench-steady-{tag}"
    probe = _synthetic.sentinel_device(run_site)
    count = int(rate * DURATION_S)
    end = datetime.now(UTC) + timedelta(seconds=DURATION_S + 10)
    messages = _synthetic.stream(run_site, count, step_s=1 / rate, end=end, skip=frozenset({probe.id}))[:-1]
    (run_dir / "stream.pickle").write_bytes(pickle.dumps(messages))
    cfg = {
        "port": port,
        "client_id": client_id,
        "topics": _synthetic.subscriptions(run_site, client_id),
        "site": str(site_path),
        "workdir": str(run_dir),
        "influx_url": vm_url,
        "ready": str(run_dir / "ready"),
        "warmup_s": WARMUP_S,
        "measure_s": DURATION_S - WARMUP_S - 2,
    }
    (run_dir / "worker.json").write_text(json.dumps(cfg))
    worker = spawn("_steady_worker", kind, str(run_dir / "worker.json"), measured=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "ready").exists():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} worker did not get ready")
        time.sleep(0.05)
    observer = Observer(vm_url, site_id, probe.id) if kind == "candidate" else None
    if observer:
        observer.start()
    pub_cfg = {"port": port, "rate": rate, "stream": str(run_dir / "stream.pickle"), "probe_topic": ""}
    pub_cfg["probe_topic"] = f"{probe.topic}/status/switch:0"
    (run_dir / "publisher.json").write_text(json.dumps(pub_cfg))
    published = result_of(spawn("_steady_publisher", str(run_dir / "publisher.json"), measured=False), 3 * DURATION_S)
    got = result_of(worker, 60)
    got["publisher"] = {k: v for k, v in published.items() if k != "probes"}
    got["expected"] = rate * got["seconds"]
    if observer:
        sent = published["probes"]
        deadline = time.monotonic() + 5
        while len(observer.seen) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        observer.stopping.set()
        observer.join()
        # The probes sent in the measured window (the last second's may still be on their way when it ends).
        began, ended = got["window"]
        window = [(n + 1, t) for n, t in enumerate(sent) if began <= t <= ended - 1.0]
        latencies = [(t, observer.seen[n] - t) for n, t in window if n in observer.seen]
        got["probes"] = len(window)
        got["probes_missing"] = got["probes"] - len(latencies)
        got["visibility_s"] = [lat for _, lat in latencies]
        got["observer_p99_s"] = percentile(observer.cycles, 99) if observer.cycles else None
    drop_session(port, client_id)
    return got


def _held(got: dict[str, Any]) -> bool:
    """The rate was held: everything published in the window taken, no probe lost, no growing backlog."""
    lat = got.get("visibility_s") or []
    if got["messages"] < 0.99 * got["expected"] or got.get("probes_missing", 0) or len(lat) < 6:
        return False
    third = len(lat) // 3
    return percentile(lat[-third:], 50) <= percentile(lat[:third], 50) + 0.5


def _summary(kind: str, rate: int, got: dict[str, Any]) -> str:
    cpu_us = got["cpu_s"] / max(got["messages"], 1) * 1e6
    text = (
        f"   {rate:,} msg/s {kind}: {got['messages'] / got['seconds']:,.0f} msg/s taken, "
        f"{cpu_us:.0f} µs CPU/msg, {got['cpu_s'] / got['seconds'] * 100:.0f} % of a core"
    )
    if got.get("visibility_s"):
        lat = got["visibility_s"]
        text += (
            f", visible p50 {percentile(lat, 50) * 1000:.0f} ms p99 {percentile(lat, 99) * 1000:.0f} ms"
            f" ({got['probes_missing']} of {got['probes']} probes missing; one ask of the store p99 "
            f"{got['observer_p99_s'] * 1000:.0f} ms), sink writes {got.get('sink_writes')}, "
            f"event loop held up to {got['loop_lag_max_s'] * 1000:.0f} ms ({got['loop_lag_over_100ms']} times > 100 ms)"
        )
    return (
        text + f"; publisher {got['publisher']['rate']:,.0f} msg/s, behind ≤ {got['publisher']['behind_max_s']:.2f} s"
    )


def run() -> list[dict[str, Any]]:
    """Rows: steady 500 and 2,000 msg/s (CPU per message, % of a core, visibility), MQTT capacity."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, pinned_to_load():
        work = Path(tmp)
        broker = start_broker(work / "mosquitto")
        vm = servers.start_victoria(work / "vm")
        try:
            site = _synthetic.ingest_site(broker.url, ROOMS)
            for rate in RATES:
                res = {}
                for kind in ("baseline", "candidate"):
                    res[kind] = one_run(kind, rate, site, broker.port, vm.url, work, f"{rate}-{kind}")
                    print(_summary(kind, rate, res[kind]), flush=True)
                base, cand = res["baseline"], res["candidate"]
                us = {k: r["cpu_s"] / max(r["messages"], 1) * 1e6 for k, r in res.items()}
                pct = {k: r["cpu_s"] / r["seconds"] * 100 for k, r in res.items()}
                lat = [v * 1000 for v in cand["visibility_s"]] or [float("nan")]
                rows += [
                    Figure(
                        f"steady_{rate}_cpu_us_per_msg",
                        us["candidate"],
                        "µs/msg",
                        us["baseline"],
                        CPU_TARGET_US if rate == 2000 else None,
                        at_most=True,
                        digits=0,
                    ).row(),
                    Figure(f"steady_{rate}_core_pct", pct["candidate"], "% of a core", pct["baseline"], None).row(),
                    Figure(f"steady_{rate}_visible_p50_ms", percentile(lat, 50), "ms", None, None, digits=0).row(),
                    Figure(
                        f"steady_{rate}_visible_p99_ms",
                        percentile(lat, 99),
                        "ms",
                        None,
                        VISIBILITY_TARGET_MS,
                        at_most=True,
                        digits=0,
                    ).row(),
                ]
                assert base["messages"] > 0
            if CAPACITY:
                held = RATES[-1] if _held(res["candidate"]) else 0
                # Up from 2,000 msg/s when it was held, else down until a rate is.
                for rate in CAPACITY_RATES if held else CAPACITY_BELOW:
                    got = one_run("candidate", rate, site, broker.port, vm.url, work, f"capacity-{rate}")
                    ok = _held(got)
                    print(_summary("candidate", rate, got) + (" — held" if ok else " — NOT held"), flush=True)
                    if got["publisher"]["rate"] < 0.98 * rate:
                        print(f"   the publisher could not send {rate:,} msg/s: capacity is at least {held:,}")
                        break
                    if ok:
                        held = max(held, rate)
                    if ok == (rate < RATES[-1]):  # the first failure going up, the first success going down
                        break
                rows.append(Figure("mqtt_capacity_msgs_per_s", held, "msg/s", None, None, digits=0).row())
        finally:
            vm.stop()
            broker.server.stop()
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
