"""What the benchmarks of tests/bench/bench_{ingest,latency,api,memory}.py share.

Fairness on a small machine: the measured process runs alone on one core (`MEASURED_CPUS`), the
load (publisher, broker, database, HTTP client) on the others (`LOAD_CPUS`). A benchmark pins
itself to the load cores while it runs (`pinned_to_load`), so the servers it starts inherit that,
and starts each measured process with `spawn(..., measured=True)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import servers

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable

_ALL = sorted(os.sched_getaffinity(0))
# The last core measures; the others carry the load. One core: no pinning at all.
MEASURED_CPUS: frozenset[int] = frozenset(_ALL[-1:]) if len(_ALL) > 1 else frozenset(_ALL)
LOAD_CPUS: frozenset[int] = frozenset(_ALL[:-1]) if len(_ALL) > 1 else frozenset(_ALL)


@contextlib.contextmanager
def pinned_to_load() -> Iterator[None]:
    """Pin this process to the load cores for a while; servers started meanwhile inherit it."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, LOAD_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def spawn(module: str, *args: str, measured: bool) -> subprocess.Popen[str]:
    """Start `python -m tests.bench.<module> args...` on the measured core or the load cores."""
    proc = subprocess.Popen(
        [PYTHON, "-m", f"tests.bench.{module}", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    # Pinned at once, while the interpreter is still starting (no preexec_fn: threads may be running
    # here); the threads it starts later inherit the pinning.
    os.sched_setaffinity(proc.pid, MEASURED_CPUS if measured else LOAD_CPUS)
    return proc


def result_of(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    """The JSON object a worker prints as its last stdout line."""
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{proc.args!r} printed no result")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def report(result: dict[str, Any]) -> None:
    """A worker's answer to the benchmark that started it: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


def start_broker(workdir: Path) -> servers.Mosquitto:
    """Mosquitto as deploy/mosquitto ships it (100 messages in flight per client), without
    persistence (nothing to fsync) and with room to queue a whole pre-published stream."""
    port = servers.free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 1000000\nqueue_qos0_messages true\nmax_inflight_messages 100\nmax_packet_size 262144\n"
        "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
    )
    argv = [servers.need("mosquitto"), "-c", str(conf)]
    srv = servers.Server("mosquitto", subprocess.Popen(["true"]), port, workdir, argv, workdir / "mosquitto.log")
    srv.start()
    return servers.Mosquitto(srv)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    """The median."""
    return float(statistics.median(values))


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of results.json.

    `ratio` is value / baseline. `target` is a minimum ratio (`at_most=False`, throughput rows) or
    a maximum value in the row's unit (`at_most=True`, latency and memory rows).
    """

    name: str
    value: float
    unit: str
    baseline: float | None
    target: float | None
    at_most: bool = False
    digits: int = 1

    def row(self) -> dict[str, Any]:
        """The row as the runner wants it."""
        ratio = round(self.value / self.baseline, 3) if self.baseline else None
        met = None
        if self.target is not None:
            met = self.value <= self.target if self.at_most else ratio is not None and ratio >= self.target
        return {
            "name": self.name,
            "value": round(self.value, self.digits),
            "unit": self.unit,
            "baseline": None if self.baseline is None else round(self.baseline, self.digits),
            "ratio": ratio,
            "target": self.target,
            "met": met,
        }


def service_settings(work: Path, mqtt_url: str | None, influx_url: str | None = None, **fields: Any) -> Any:
    """The service's settings for a measured worker: SQLite store and data in `work`, no .env read,
    telemetry into `influx_url` (bucket "bench") when given."""
    from service.config.settings import Settings

    extra: dict[str, Any] = {"influx_url": influx_url, "influx_bucket": "bench"} if influx_url else {}
    return Settings(
        _env_file=None,
        env="test",
        database_url=f"sqlite:///{work}/wattkeeper.db",
        data_dir=work / "var",
        mqtt_url=mqtt_url,
        **extra,
        **fields,
    )
