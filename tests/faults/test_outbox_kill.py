"""The telemetry database down, the service SIGKILLed with a full outbox: nothing lost, nothing reordered.

The service runs as a child process against the demo site's simulators, its InfluxDB URL pointing
at a recording proxy in front of a VictoriaMetrics that is down. Ten minutes of an outage must
not take ten minutes of test, so the service's clocks and the simulators run SPEED times as fast
(tests/faults/fast_clock.py): the service itself reads the devices, stamps the readings and puts
them through its own sink into its own outbox until that holds more than ten simulated minutes of
telemetry; its poll timers keep wall time, so a meter read every second is read every SPEED
simulated seconds. Simulated time runs in the recent past, so every timestamp is one the database
takes. The service is SIGKILLed mid-stream; whatever the outbox holds at that moment (complete
lines; a line torn by the kill is cut) is what must arrive, byte for byte and in outbox order,
once the database is back and the service (the product's own `serve`, on the wall clock) is
started again; and every number in it must be stored at its original timestamp.

The bound is checked in-process, where the lines put and the lines on disk can be counted at the
same instant: a put that overflows drops the oldest lines, reports exactly how many, and raises
`telemetry_dropped`.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import math
import os
import re
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
from service.telemetry.lineproto import telemetry_line
from simulators.runner import Simulation
from tests import servers
from tests.conftest import site_for_test, write_site
from tests.faults.fast_clock import FastClock
from tests.faults.helpers import ROOT, ServiceProcess, figure, make_site
from tests.harness import eventually, running_service

SPEED = 15.0  # simulated seconds per wall second: the service's clocks and the simulators
OUTAGE_S = 630  # simulated seconds of telemetry the service holds in its outbox when it is killed
HISTORY_SERIES = 20  # the bound test's lines: 20 series ...
HISTORY_S = 630  # ... one reading a second for 10.5 minutes
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


Key = tuple[str, frozenset[tuple[str, str]], int]  # (metric, labels, timestamp ms) as VictoriaMetrics keeps a sample


def torn_bytes(directory: Path) -> int:
    """Bytes after the last complete line of the segment being written (what a kill mid-write leaves)."""
    return sum(len(data) - data.rfind(b"\n") - 1 for data in (p.read_bytes() for p in directory.glob("*.open")))


def export(url: str, match: str) -> dict[Key, list[float]]:
    """(metric, labels, timestamp ms) -> values of the samples matching `match`."""
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10):
        pass
    query = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=60) as r:
        body = r.read().decode()
    out: dict[Key, list[float]] = {}
    for row in body.splitlines():
        series = json.loads(row)
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        labels.pop("db", None)  # VictoriaMetrics' label for the bucket written to
        key = frozenset(labels.items())
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            out.setdefault((name, key, ts), []).append(value)
    return out


def _split(text: str, sep: str) -> list[str]:
    """`text` cut at every `sep` that is neither backslash-escaped nor inside a quoted string."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    out.append("".join(current))
    return out


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, float], int]:
    """(measurement, tags, numeric fields, timestamp ns) of a line-protocol line; string fields left out."""
    series, fields, ts = _split(line, " ")
    measurement, *tag_texts = _split(series, ",")
    tags = {}
    for text in tag_texts:
        key, value = _split(text, "=")
        tags[_unescape(key)] = _unescape(value)
    numbers = {}
    for text in _split(fields, ","):
        key, raw = _split(text, "=")
        if raw.startswith('"'):
            continue  # a string: VictoriaMetrics keeps numbers only
        numbers[_unescape(key)] = (
            1.0 if raw in ("t", "true") else 0.0 if raw in ("f", "false") else float(raw.rstrip("iu"))
        )
    return _unescape(measurement), tags, numbers, int(ts)


def points_of(line: str) -> dict[Key, float]:
    """The samples a line puts in VictoriaMetrics: metric `<measurement>_<field>`, the tags as labels."""
    measurement, tags, numbers, ns = parse_line(line)
    labels = frozenset(tags.items())
    return {(f"{measurement}_{name}", labels, ns // 1_000_000): value for name, value in numbers.items()}


@pytest.mark.slow
async def test_outage_and_sigkill_with_a_full_outbox_lose_nothing(
    fresh_mosquitto: servers.Mosquitto, victoria_down: servers.Server, tmp_path: Path
) -> None:
    site = site_for_test(fresh_mosquitto.url)
    site_file = write_site(site, tmp_path / "site.yaml")
    proxy = RecordingProxy(victoria_down.url)
    workdir = tmp_path / "service"
    outbox = workdir / "var" / "outbox"
    # Simulated time starts 20 minutes back: at SPEED it is still in the past when the service is killed.
    clock = FastClock(SPEED, datetime.now(UTC) - timedelta(minutes=20), time.time())
    env = {
        "WATTKEEPER_MQTT_URL": fresh_mosquitto.url,
        "WATTKEEPER_INFLUX_URL": proxy.url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    svc = ServiceProcess(site_file, workdir, env, launcher=["-m", "tests.faults.fast_clock", *clock.argv()])
    try:
        async with Simulation(site, control_port=None, seed=5, speed=SPEED, start=clock.now()):
            began = time.monotonic()
            await asyncio.to_thread(svc.start)
            first_ns = await eventually(lambda: _first_telemetry_ns(outbox), 60, 0.2)
            # The service goes on reading the devices until its outbox spans OUTAGE_S of simulated time.
            await eventually(lambda: _true(_ns(clock.now()) - first_ns >= OUTAGE_S * 1e9), 120, 0.2)
            await asyncio.sleep(0.37)  # an arbitrary moment in the middle of writing
            svc.sigkill()
            outage_wall_s = time.monotonic() - began
        expected = outbox_lines(outbox)
        torn = torn_bytes(outbox)
        assert proxy.lines() == [], "nothing can have been delivered while the database was down"
        began = time.monotonic()
        await asyncio.to_thread(victoria_down.start)
        svc.launcher = ["-m", "service"]  # the product's own `serve`, on the wall clock
        await asyncio.to_thread(svc.start)
        wanted = set(expected)
        await eventually(lambda: _arrived(proxy, wanted), 120, 0.25)
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
    telemetry = [parse_line(line) for line in expected if line.startswith("telemetry,")]
    span_s = (max(t[3] for t in telemetry) - min(t[3] for t in telemetry)) / 1e9
    want = [point for line in expected for point in points_of(line).items()]
    stored = export(victoria_down.url, f'{{site="{site.site.id}"}}')
    # VictoriaMetrics keeps 12 to 13 significant digits of a float (18.582904815673828 -> 18.582904815673).
    not_stored = [(k, v) for k, v in want if not any(math.isclose(v, got, rel_tol=1e-11) for got in stored.get(k, ()))]
    delivered = len(expected) - len(missing)
    figure(
        "outbox-kill",
        f"the service (its clocks and the simulators at {SPEED:g}x; poll timers keep wall time, so a meter "
        f"read every second is read every {SPEED:g} simulated s) carried {span_s / 60:.1f} simulated minutes "
        f"of telemetry ({len(telemetry):,} readings) through {outage_wall_s:.0f} s of database outage; "
        f"SIGKILLed with {len(expected):,} lines in its outbox ({torn} bytes of a torn line cut); "
        f"{delivered:,} of {len(expected):,} delivered within {recovery_s:.0f} s of restarting database and "
        f"service, {out_of_order} out of order; {len(want) - len(not_stored):,} of {len(want):,} numbers stored "
        f"at their original timestamps (values to VictoriaMetrics' 12 significant digits)",
    )
    assert span_s >= 600, "the outbox held less than ten simulated minutes of telemetry"
    assert missing == []
    assert out_of_order == 0
    assert not_stored == [], not_stored[:5]


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
    order = {k: i for i, line in enumerate(generated) for k in points_of(line)}
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


def _ns(t: datetime) -> int:
    return round(t.timestamp() * 1e9)


async def _first_telemetry_ns(directory: Path) -> int | None:
    """The timestamp of the first reading in an outbox, once there is one."""

    def first() -> int | None:
        if not directory.is_dir():
            return None
        line = next((line for line in outbox_lines(directory) if line.startswith("telemetry,")), None)
        return None if line is None else parse_line(line)[3]

    return await asyncio.to_thread(first)


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
