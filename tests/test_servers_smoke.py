"""The test servers start and answer (a broken install shows up here first)."""

from __future__ import annotations

import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

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


def _psql(url: str, sql: str) -> str:
    done = subprocess.run(["psql", url, "-qAt", "-c", sql], capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def test_postgres_url_is_a_fresh_database_on_the_session_server(postgres_admin: str, postgres_url: str) -> None:
    assert postgres_url.rsplit("/", 1)[0] == postgres_admin.rsplit("/", 1)[0]
    assert _psql(postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


def test_private_postgres_runs_in_a_temporary_directory_and_stops() -> None:
    with servers.private_postgres() as url:
        data_dir = Path(_psql(url, "SHOW data_directory"))
        assert data_dir.is_dir()
        port = int(urllib.parse.urlsplit(url).port or 0)
        servers.wait_port(port)
    assert not data_dir.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
