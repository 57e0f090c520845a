"""The command line: `wattkeeper check` exit codes and output, `wattkeeper demo` as a process, --help."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

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

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return out, reader


def _wait_for(lines: queue.Queue[str], pattern: str, seen: list[str], timeout_s: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s; output so far:\n{''.join(seen)}")


def test_demo_runs_serves_the_demo_site_and_stops_on_sigterm(fresh_mosquitto: Mosquitto, tmp_path: Path) -> None:
    """`wattkeeper demo` on the test broker, its own ports and data directory: it prints the dashboard
    URL and an admin key that opens /api/state with the demo site's devices; SIGTERM ends it cleanly."""
    site = site_for_test(fresh_mosquitto.url)  # the demo site, its Modbus simulators on free ports
    site_file = write_site(site, tmp_path / "demo.yaml")
    http_port, sim_port = free_port(), free_port()
    data = tmp_path / "var"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "WATTKEEPER_MQTT_URL": fresh_mosquitto.url,
        "WATTKEEPER_HTTP_PORT": str(http_port),
        "WATTKEEPER_SIM_PORT": str(sim_port),
        "WATTKEEPER_DATA_DIR": str(data),
        "WATTKEEPER_DATABASE_URL": f"sqlite:///{data}/wattkeeper.db",
    }
    for name in ("WATTKEEPER_API_KEYS", "WATTKEEPER_INFLUX_URL", "WATTKEEPER_ENV"):
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
    seen: list[str] = []
    try:
        url = _wait_for(lines, r"dashboard\s+(http://\S+)", seen, 120).group(1)
        key = _wait_for(lines, r"admin API key\s+(\S+)", seen, 30).group(1)
        assert url == f"http://127.0.0.1:{http_port}/"
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
        assert (data / "wattkeeper.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    while not lines.empty():
        seen.append(lines.get_nowait())
    output = "".join(seen)
    assert "Traceback" not in output and "ERROR" not in output, output


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
