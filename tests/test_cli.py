"""The command line: `wattkeeper check` exit codes and output, `wattkeeper demo` as a process, --help."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from service.config.site import Site
from tests.conftest import ROOT, site_for_test, write_site
from tests.servers import Mosquitto, free_port

WK = [sys.executable, "-m", "service"]


def run(*args: str, columns: int = 400) -> subprocess.CompletedProcess[str]:
    """The CLI as a process; `columns` is the terminal width it sees (wide: one table row per line)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([*WK, *args], capture_output=True, text=True, timeout=60, env=env)


def test_check_demo_site_passes(demo_site_path: Path) -> None:
    out = run("check", "--site", str(demo_site_path))
    assert out.returncode == 0, out.stderr
    assert "generator >= 120 % of security load" in out.stdout
    assert "PASS" in out.stdout and "FAIL" not in out.stdout


def test_check_json(demo_site_path: Path) -> None:
    out = run("check", "--site", str(demo_site_path), "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["status"] == "PASS"


def test_check_failing_site_names_rule_and_numbers(demo_site_path: Path, tmp_path: Path) -> None:
    text = demo_site_path.read_text().replace("rated_kw: 200", "rated_kw: 179")
    bad = tmp_path / "undersized.yaml"
    bad.write_text(text)
    out = run("check", "--site", str(bad))
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if "120 %" in x and "FAIL" in x)
    assert "179 kW" in line and "119.3 %" in line and "150 kW" in line


def test_check_invalid_file_lists_every_error(demo_site_path: Path, tmp_path: Path) -> None:
    text = (
        demo_site_path.read_text()
        .replace("grade: first", "grade: gold")
        .replace("department: marketing, kind: meeting", "department: finance, kind: meeting")
    )
    bad = tmp_path / "broken.yaml"
    bad.write_text(text)
    out = run("check", "--site", str(bad))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{bad}: invalid site file (2 error(s)):",
        "  site.grade: Input should be 'special', 'first', 'second', 'temporary' or 'ordinary', got 'gold' "
        "(broken.yaml:9)",
        "  rooms[5].department: unknown department 'finance' (broken.yaml:44)",
    ]
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("holidays: [", "holidays: [2026-02-30, ", "calendar.holidays[0]: '2026-02-30' is not a date"),
        ("holidays: [", "holidays: [2026-13-01, ", "calendar.holidays[0]: '2026-13-01' is not a date"),
        ("meter: meter-gen}", "meter: 2026-02-31}", "generators[0].meter: unknown device '2026-02-31'"),
        ("  grade: first\n", "  grade: first\n  grade: ordinary\n", "site.grade: key 'grade' given twice"),
    ],
)
def test_check_bad_date_or_repeated_key_is_an_error_not_a_crash(
    demo_site_path: Path, tmp_path: Path, old: str, new: str, error: str
) -> None:
    text = demo_site_path.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    out = run("check", "--site", str(bad))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert any(line.strip().startswith(error) and "(bad.yaml:" in line for line in out.stderr.splitlines()), out.stderr


def test_check_warns_about_energy_counters_without_rated_kw(demo_site_path: Path, tmp_path: Path) -> None:
    text = demo_site_path.read_text()
    old = "port: 15022, unit: 1, poll_s: 1, rated_kw: 400}"
    assert old in text
    site = tmp_path / "unrated.yaml"
    site.write_text(text.replace(old, "port: 15022, unit: 1, poll_s: 1}"))
    out = run("check", "--site", str(site))
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(x for x in out.stdout.splitlines() if x.startswith("energy counters bounded by rated_kw"))
    assert "WARN" in row and "no rated_kw for meter-grid-b:" in row
    assert "overall WARN" in out.stdout
    data = json.loads(run("check", "--site", str(site), "--json").stdout)
    assert data["status"] == "WARN"
    assert [r["rule"] for r in data["rules"] if r["status"] == "WARN"] == ["energy.rated_kw"]


@pytest.mark.parametrize(
    "cmd", [[], ["serve"], ["simulate"], ["demo"], ["check"], ["report", "energy"], ["keys", "create"]]
)
def test_help(cmd: list[str]) -> None:
    out = run(*cmd, "--help")
    assert out.returncode == 0
    assert "Usage" in out.stdout


def _lines(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The lines of a pipe, read by a thread (so waiting for one can time out) that ends at EOF."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            out.put(line)
        out.put(_ENDED)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return out, reader


def _wait_for(lines: queue.Queue[str], pattern: str, seen: list[str], timeout_s: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if _ENDED in seen:
                break  # the process has ended: no more lines will come
            continue
        if line == _ENDED:
            seen.append(line)
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s; output so far:\n{''.join(seen)}")


_ENDED = ""  # what the reader puts after the last line: the process closed its output


# pymodbus logs a reply that comes after its request timed out at ERROR; on a loaded machine a poll
# may time out so (the driver counts it as a failed poll), which is not a fault of the demo.
LATE_REPLY = "received pdu without a corresponding request"


def _console_problems(output: str) -> list[str]:
    """Lines of the demo's console that show a traceback or an error."""
    if "Traceback" in output:
        return [output[output.index("Traceback") :]]
    return [line for line in output.splitlines() if "ERROR" in line and LATE_REPLY not in line]


PORTS_TAKEN = "are in use (another demo running?)"


@dataclass
class Demo:
    """A `wattkeeper demo` child process, started up to its "Ctrl-C stops everything." line."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str]
    reader: threading.Thread
    seen: list[str]
    site: Site
    http_port: int
    sim_port: int
    data: Path

    def banner(self, pattern: str) -> re.Match[str]:
        """A line of what the demo printed on start."""
        match = re.search(pattern, "".join(self.seen))
        assert match, f"no {pattern!r} in:\n{''.join(self.seen)}"
        return match

    def stop(self) -> str:
        """Kill the demo if it still runs; its whole output."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "".join(self.seen)


def _start_demo(tmp_path: Path, site_mqtt_url: str, env_extra: dict[str, str], drop: tuple[str, ...]) -> Demo:
    """Start `wattkeeper demo` on free ports with its data under tmp_path. Free ports are picked before
    the demo binds them, so another process can take one in between: the demo then says so and exits,
    and is started again on other ports (at most three times)."""
    for attempt in range(3):
        site = site_for_test(site_mqtt_url)  # the demo site, its Modbus simulators on free ports
        site_file = write_site(site, tmp_path / "demo.yaml")
        http_port, sim_port = free_port(), free_port()
        data = tmp_path / f"var{attempt}"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "WATTKEEPER_HTTP_PORT": str(http_port),
            "WATTKEEPER_SIM_PORT": str(sim_port),
            "WATTKEEPER_DATA_DIR": str(data),
            "WATTKEEPER_DATABASE_URL": f"sqlite:///{data}/wattkeeper.db",
            **env_extra,
        }
        for name in drop:
            env.pop(name, None)
        proc = subprocess.Popen(
            [*WK, "demo", "--site", str(site_file)],
            cwd=tmp_path,  # no .env of the checkout, nothing written outside tmp_path
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        lines, reader = _lines(proc.stdout)
        demo = Demo(proc, lines, reader, [], site, http_port, sim_port, data)
        try:
            _wait_for(lines, r"Ctrl-C stops everything", demo.seen, 120)
            return demo
        except AssertionError:
            output = demo.stop()
            # taken before the check, or between the demo's check and its bind
            if (PORTS_TAKEN not in output and "Address already in use" not in output) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_demo_runs_serves_the_demo_site_and_stops_on_sigterm(fresh_mosquitto: Mosquitto, tmp_path: Path) -> None:
    """`wattkeeper demo` on the test broker, its own ports and data directory: it prints the dashboard
    URL and an admin key that opens /api/state with the demo site's devices; SIGTERM ends it cleanly."""
    demo = _start_demo(
        tmp_path,
        fresh_mosquitto.url,
        {"WATTKEEPER_MQTT_URL": fresh_mosquitto.url},
        ("WATTKEEPER_API_KEYS", "WATTKEEPER_INFLUX_URL", "WATTKEEPER_ENV"),
    )
    site, proc = demo.site, demo.proc
    try:
        url = demo.banner(r"dashboard\s+(http://\S+)").group(1)
        key = demo.banner(r"admin API key\s+(\S+)").group(1)
        assert url == f"http://127.0.0.1:{demo.http_port}/"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as c:
            assert c.get("/api/state").status_code == 200
            assert httpx.get(f"{url}api/state", timeout=10).status_code == 401  # the key is what opens it
            modbus = {d.id for d in site.devices if d.driver == "modbus"}
            mqtt = {d.id for d in site.devices if d.driver == "mqtt"}
            deadline, reporting = time.monotonic() + 60, set[str]()
            while time.monotonic() < deadline:
                rows = c.get("/api/state").json()
                reporting = {r["device"] for r in rows if r["quality"] == "good"}
                if reporting & modbus and reporting & mqtt:
                    break
                time.sleep(0.5)
            assert reporting & modbus and reporting & mqtt, f"devices reporting: {sorted(reporting)}"
            assert reporting <= modbus | mqtt
            assert c.get("/healthz").json()["site"] == site.site.id
        assert (demo.data / "wattkeeper.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        output = demo.stop()
    assert _console_problems(output) == [], output


def test_demo_without_a_broker_starts_its_own_and_stops_in_order(tmp_path: Path) -> None:
    """The README's first command as it runs on a fresh machine: no broker configured and 1883 taken.
    `wattkeeper demo` starts its embedded broker (amqtt) on a free port, the simulators' MQTT and Modbus
    devices report through it, the dashboard answers; SIGTERM stops the service before the simulators
    and the broker: exit 0, no traceback, no device reported offline, every port released."""
    squatter = socket.socket()  # 1883 taken: by this socket, or by whatever already listens there
    try:
        squatter.bind(("127.0.0.1", 1883))
        squatter.listen()
    except OSError:
        pass
    try:
        demo = _start_demo(  # the demo sets the site's broker to its own
            tmp_path,
            "mqtt://127.0.0.1:1",
            {},
            ("WATTKEEPER_MQTT_URL", "WATTKEEPER_API_KEYS", "WATTKEEPER_INFLUX_URL", "WATTKEEPER_ENV"),
        )
        site, proc, http_port, sim_port = demo.site, demo.proc, demo.http_port, demo.sim_port
        try:
            broker_port = int(demo.banner(r"MQTT broker\s+mqtt://127\.0\.0\.1:(\d+) \(embedded\)").group(1))
            assert broker_port != 1883
            url = demo.banner(r"dashboard\s+(http://\S+)").group(1)
            key = demo.banner(r"admin API key\s+(\S+)").group(1)
            assert url == f"http://127.0.0.1:{http_port}/"
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as c:
                assert c.get("/login").status_code == 200  # the dashboard answers
                modbus = {d.id for d in site.devices if d.driver == "modbus"}
                mqtt = {d.id for d in site.devices if d.driver == "mqtt"}
                deadline, reporting = time.monotonic() + 60, set[str]()
                while time.monotonic() < deadline:  # a timeout for a slow machine, not a figure
                    rows = c.get("/api/state").json()
                    reporting = {r["device"] for r in rows if r["quality"] == "good"}
                    if reporting & mqtt and reporting & modbus:
                        break
                    time.sleep(0.5)
                assert reporting & mqtt, "no MQTT device reports through the embedded broker"
                assert reporting & modbus, f"devices reporting: {sorted(reporting)}"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            output = demo.stop()
    finally:
        squatter.close()
    assert _console_problems(output) == [], output
    assert "offline" not in output.lower(), output
    for port in (broker_port, http_port, sim_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers after the demo ended"


# -- office rules (issue 16) -------------------------------------------------------------------------

R2119 = "department: marketing, kind: meeting,"
R2119_PLUG = "appliance: projector, rated_kw: 3.5}"


def test_check_lists_each_rooms_office_thresholds_and_approvals(demo_site_path: Path, tmp_path: Path) -> None:
    text = demo_site_path.read_text()
    assert R2119 in text and R2119_PLUG in text
    site = tmp_path / "office.yaml"
    site.write_text(
        text.replace(R2119, R2119 + " central_heating: true, thresholds: {cooling_min_c: 28},").replace(
            R2119_PLUG, "appliance: projector, rated_kw: 3.5, approved_w: 2200}"
        )
    )
    out = run("check", "--site", str(site))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "  r2119  cooling_min_c=28* · central_heating=yes*" in lines
    assert "  r3102  the site's" in lines
    site_line = " ".join(x for x in lines if "empty_room_delay_s" in x or "daylight_lux" in x)
    assert "cooling_min_c=26" in site_line and "daylight_lux=800" in site_line and "empty_ac_delay_s=600" in site_line
    assert "  r2119-plug in r2119: 2200 W (the room's plug_max_w is 1200 W)" in lines
    office = json.loads(run("check", "--site", str(site), "--json").stdout)["office"]
    r2119 = next(r for r in office["rooms"] if r["id"] == "r2119")
    assert r2119["thresholds"]["cooling_min_c"] == 28 and r2119["own_thresholds"] == ["cooling_min_c"]
    assert r2119["approved_w"] == {"r2119-plug": 2200} and r2119["central_heating"] is True


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            "  grade: first\n",
            '  grade: first\n  heating_season: ["13-40", "03-15"]\n',
            "site.heating_season[0]: '13-40'",
        ),
        (R2119_PLUG, "appliance: projector, rated_kw: 3.5, approved_w: -1}", "devices[31].approved_w: Input should be"),
        (R2119, R2119 + " thresholds: {cooling_max_c: 28},", "rooms[5].thresholds.cooling_max_c: unknown key"),
    ],
)
@pytest.mark.parametrize("command", ["check", "serve"])
def test_bad_office_keys_stop_everything_with_key_path_and_line(
    demo_site_path: Path, tmp_path: Path, command: str, old: str, new: str, error: str
) -> None:
    text = demo_site_path.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    out = run(command, "--site", str(bad), *(["--port", str(free_port())] if command == "serve" else []))
    assert out.returncode == 2, out.stdout + out.stderr
    assert any(line.strip().startswith(error) and "(bad.yaml:" in line for line in out.stderr.splitlines()), out.stderr
    assert out.stdout == ""
