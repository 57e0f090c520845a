"""The test servers start and answer (a broken install shows up here first)."""

from __future__ import annotations

import subprocess
import urllib.parse
import urllib.request

from tests import servers


def test_mosquitto_round_trip(mosquitto: servers.Mosquitto) -> None:
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            mosquitto.host,
            "-p",
            str(mosquitto.port),
            "-t",
            "smoke/#",
            "-C",
            "1",
            "-W",
            "10",
        ],
        stdout=subprocess.PIPE,
    )
    servers.wait_port(mosquitto.port)
    for _ in range(50):
        subprocess.run(
            ["mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "smoke/x", "-m", "hi"],
            check=True,
        )
        try:
            out, _ = sub.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    assert out.strip() == b"hi"


def test_victoria_accepts_influx_line_protocol(victoria: servers.Server) -> None:
    req = urllib.request.Request(f"{victoria.url}/api/v2/write", data=b"smoke,site=t value=1", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204


def test_influxdb1_answers_influxql(influxdb1: servers.Server) -> None:
    q = urllib.parse.urlencode({"q": "CREATE DATABASE smoke"})
    req = urllib.request.Request(f"{influxdb1.url}/query?{q}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert b"error" not in r.read()
