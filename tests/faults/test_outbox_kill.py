"""The telemetry database down, the service SIGKILLed with a full outbox: nothing lost, nothing reordered.

The service runs as a child process against the demo site's simulators, its InfluxDB URL pointing
at a recording proxy in front of a VictoriaMetrics that is down. Ten minutes of an outage cannot
be lived through in a test, so its first ten and a half minutes are generated: readings 1 s apart
with current timestamps, rendered by the service's own line-protocol function into the service's
own outbox (`service.sink.Outbox`), exactly what a service buffering through those minutes leaves
on disk. The live service then adds its own readings and is SIGKILLed mid-stream; whatever the
outbox holds at that moment (complete lines; a line torn by the kill is cut) is what must arrive,
byte for byte and in outbox order, once the database and the service are back.

The bound is checked in-process, where the lines put and the lines on disk can be counted at the
same instant: a put that overflows drops the oldest lines, reports exactly how many, and raises
`telemetry_dropped`.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from drivers.types import Reading
from service import app as service_app
from service.lineproto import telemetry_line
from service.sink import Outbox
from simulators.runner import Simulation
from tests import servers
from tests.conftest import site_for_test, write_site
from tests.faults.helpers import ServiceProcess, figure, make_site
from tests.harness import eventually, running_service

HISTORY_SERIES = 20
HISTORY_S = 630  # 10.5 minutes, one reading a second per series
LIVE_LINES = 1500  # lines the live service adds to the outbox before it is killed (at least)
BOUND = 6_000  # outbox bound of the in-process test (lines)


class RecordingProxy:
    """Forwards InfluxDB writes to the database and records, in arrival order, the lines it accepted."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.accepted: list[str] = []
        self.refused = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-encoding")}
                req = urllib.request.Request(proxy.target + self.path, data=body, method="POST", headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        status = r.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                except OSError:
                    status = 503  # the database is down
                if 200 <= status < 300:
                    raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                    with proxy._lock:
                        proxy.accepted.extend(raw.decode().splitlines())
                else:
                    proxy.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def lines(self) -> list[str]:
        with self._lock:
            return list(self.accepted)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def victoria_down(tmp_path: Path) -> Iterator[servers.Server]:
    """A VictoriaMetrics of this test's own, killed: `.start()` it when the outage ends."""
    vm = servers.start_victoria(tmp_path / "victoria")
    vm.kill()
    try:
        yield vm
    finally:
        vm.stop()


def history(site: str, end: datetime) -> list[str]:
    """HISTORY_S seconds of readings of HISTORY_SERIES meters, 1 s apart, ending at `end`, oldest first."""
    lines = []
    for s in range(HISTORY_S):
        ts = end - timedelta(seconds=HISTORY_S - s)
        for k in range(HISTORY_SERIES):
            r = Reading(device=f"hist-{k:02d}", point="power", value=float(s * 100 + k), unit="W", ts=ts)
            line = telemetry_line(r, {"site": site})
            assert line is not None
            lines.append(line)
    return lines


def outbox_lines(directory: Path) -> list[str]:
    """The complete lines an outbox directory holds, in delivery order (a torn last line is cut)."""
    found = []
    for path in directory.iterdir():
        if path.suffix in (".seg", ".open"):
            found.append((int(path.stem.split("-")[0]), path))
    out: list[str] = []
    for _, path in sorted(found):
        data = path.read_bytes()
        out += data[: data.rfind(b"\n") + 1].decode().splitlines()
    return out


def export(url: str, match: str) -> dict[tuple[str, int], float]:
    """(device, timestamp ms) -> value of the telemetry_value samples matching `match`."""
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10):
        pass
    query = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=30) as r:
        body = r.read().decode()
    out: dict[tuple[str, int], float] = {}
    for row in body.splitlines():
        series = json.loads(row)
        device = series["metric"]["device"]
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            out[(device, ts)] = value
    return out


def history_expected(lines: list[str]) -> dict[tuple[str, int], float]:
    """What history lines put in the database, in line order: (device, ms) -> value."""
    out = {}
    for line in lines:
        series, field, ns = line.rsplit(" ", 2)
        device = next(t.split("=", 1)[1] for t in series.split(",") if t.startswith("device="))
        out[(device, int(ns) // 1_000_000)] = float(field.split("=", 1)[1])
    return out


@pytest.mark.slow
async def test_outage_and_sigkill_with_a_full_outbox_lose_nothing(
    fresh_mosquitto: servers.Mosquitto, victoria_down: servers.Server, tmp_path: Path
) -> None:
    site = site_for_test(fresh_mosquitto.url)
    site_file = write_site(site, tmp_path / "site.yaml")
    proxy = RecordingProxy(victoria_down.url)
    workdir = tmp_path / "service"
    outbox = workdir / "var" / "outbox"
    generated = history(site.site.id, datetime.now(UTC).replace(microsecond=0))
    box = Outbox(outbox, max_lines=service_app.OUTBOX_MAX_LINES, segment_lines=5000)
    box.append(generated)
    box.close()

    env = {"WATTKEEPER_MQTT_URL": fresh_mosquitto.url, "WATTKEEPER_INFLUX_URL": proxy.url}
    svc = ServiceProcess(site_file, workdir, env)
    try:
        async with Simulation(site, control_port=None, seed=5):
            await asyncio.to_thread(svc.start)
            # The service reads the devices and keeps adding its own lines to the outbox.
            await eventually(lambda: _depth_at_least(svc, len(generated) + LIVE_LINES), 60, 0.2)
            await asyncio.sleep(0.37)  # an arbitrary moment in the middle of writing
            svc.sigkill()
            expected = outbox_lines(outbox)
            assert proxy.lines() == [], "nothing can have been delivered while the database was down"
            await asyncio.to_thread(victoria_down.start)
            await asyncio.to_thread(svc.start)
            wanted = set(expected)
            began = time.monotonic()
            await eventually(lambda: _arrived(proxy, wanted), 90, 0.25)
            recovery_s = time.monotonic() - began
        arrived = proxy.lines()
    finally:
        svc.stop()
        proxy.close()

    first_arrival: dict[str, int] = {}
    for i, line in enumerate(arrived):
        first_arrival.setdefault(line, i)
    missing = [line for line in expected if line not in first_arrival]
    positions = [first_arrival[line] for line in expected if line in first_arrival]
    out_of_order = sum(1 for a, b in itertools.pairwise(positions) if b < a)
    stored = export(victoria_down.url, f'telemetry_value{{site="{site.site.id}",device=~"hist-.*"}}')
    want = history_expected(generated)
    not_stored = [k for k, v in want.items() if stored.get(k) != v]
    span_s = (max(ts for _, ts in want) - min(ts for _, ts in want)) / 1000
    figure(
        "outbox-kill",
        f"{len(expected) - len(missing):,} of {len(expected):,} outbox lines delivered after recovery "
        f"({len(generated):,} from {span_s / 60:.1f} min of outage + {len(expected) - len(generated):,} live, "
        f"service SIGKILLed mid-write), {out_of_order} out of order, in {recovery_s:.0f} s; "
        f"{len(want) - len(not_stored):,} of {len(want):,} outage points stored with their original timestamps",
    )
    assert span_s >= 600
    assert expected[: len(generated)] == generated, "the outage history leads the outbox"
    assert len(expected) >= len(generated) + LIVE_LINES, "the live service added too little before the kill"
    assert missing == []
    assert out_of_order == 0
    assert not_stored == []


async def test_outbox_over_its_bound_drops_the_oldest_reports_the_exact_count_and_alarms(
    victoria_down: servers.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_app, "OUTBOX_MAX_LINES", BOUND)
    site = make_site("site: {id: bound, name: outbox bound, allowed_interruption_s: 10}\n")
    influx = {"influx_url": victoria_down.url, "influx_bucket": "wk"}
    outbox = tmp_path / "var" / "outbox"
    async with running_service(site, tmp_path, influx=influx, drivers=False) as svc:
        sink = svc.services.sink
        assert sink is not None
        await eventually(lambda: _true(sink.retries >= 2), 30, 0.05)
        # Put right after a failed attempt: nothing is in flight, so the bound may drop any segment.
        seen = sink.retries
        await eventually(lambda: _true(sink.retries > seen), 30, 0.001)
        generated = history(site.site.id, datetime.now(UTC).replace(microsecond=0))
        on_disk_before = len(outbox_lines(outbox))
        dropped_before = sink.dropped
        sink.put_many(generated)  # synchronous: no other put can come between these lines
        on_disk_after = len(outbox_lines(outbox))
        reported = sink.dropped - dropped_before
        lost_on_disk = on_disk_before + len(generated) - on_disk_after

        async def reported_everywhere() -> tuple[dict[str, Any], float] | None:
            # Later puts (the core's own lines) may drop more: wait until alarm and gauge show the total.
            async with svc.client("viewer") as c:
                alarms = (await c.get("/api/alarms", params={"type": "telemetry_dropped"})).json()
                gauge = _metric((await c.get("/metrics")).text, "wattkeeper_telemetry_dropped")
            if not alarms or alarms[0]["value"] != sink.dropped or gauge != sink.dropped:
                return None
            return alarms[0], gauge

        raised, gauge = await eventually(reported_everywhere, 15)
        await asyncio.to_thread(victoria_down.start)
        await eventually(lambda: _true(sink.outbox_depth == 0), 60, 0.1)
    stored = export(victoria_down.url, f'telemetry_value{{site="{site.site.id}",device=~"hist-.*"}}')
    order = {k: i for i, k in enumerate(history_expected(generated))}
    kept = sorted(order[k] for k in stored if k in order)
    first_kept = kept[0] if kept else len(generated)
    figure(
        "outbox-bound",
        f"{len(generated):,} lines put into an outbox bounded at {BOUND:,} lines: {reported:,} reported dropped, "
        f"{lost_on_disk:,} gone from disk, all of them the oldest; telemetry_dropped raised "
        f"({raised['severity']}, value {raised['value']:g} = /metrics {gauge:g}); the newest {len(kept):,} delivered",
    )
    assert reported == lost_on_disk > 0
    assert on_disk_after <= BOUND
    assert kept == list(range(first_kept, len(generated))), "what survives is the newest lines, without gaps"
    assert first_kept > 0


def _depth_at_least(svc: ServiceProcess, n: int) -> Awaitable[bool]:
    async def check() -> bool:
        health = await asyncio.to_thread(svc.get, "/healthz")
        return int(health.get("outbox_depth") or 0) >= n

    return check()


def _arrived(proxy: RecordingProxy, wanted: set[str]) -> Awaitable[bool]:
    async def check() -> bool:
        return wanted <= set(proxy.lines())

    return check()


async def _true(value: object) -> bool:
    return bool(value)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
