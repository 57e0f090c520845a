"""Real servers for the tests, each on a free loopback port with its data in a temporary directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 20.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s")


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Wait until an HTTP URL answers 2xx."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if 200 <= r.status < 300:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer: {last}")


def need(binary: str) -> str:
    """Path of a server binary that `make test` installs."""
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}", f"/usr/bin/{binary}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{binary} is not installed; run `make test` (it installs the Debian packages)")


@dataclass
class Server:
    """A running server process."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    argv: list[str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def start(self) -> None:
        """(Re)start with the same arguments, port and data."""
        self.stop()
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_port(self.port)


def _spawn(name: str, argv: list[str], port: int, workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    srv = Server(name, subprocess.Popen(["true"]), port, workdir, argv, log)
    srv.start()
    return srv


@dataclass
class Mosquitto:
    """A Mosquitto broker: `host`, `port`, `url` (mqtt://127.0.0.1:port)."""

    server: Server
    host: str = "127.0.0.1"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def restart(self) -> None:
        """Stop and start again with the same persistence file."""
        self.server.start()


def start_mosquitto(workdir: Path, extra_conf: str = "", port: int | None = None) -> Mosquitto:
    """Start Mosquitto on loopback; anonymous allowed unless extra_conf says otherwise."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    body = extra_conf or "allow_anonymous true\n"
    if os.geteuid() == 0 and "\nuser " not in f"\n{body}":
        # As root Mosquitto drops to the `mosquitto` user, which cannot write a pytest tmp dir: the
        # persistence file would fail ("Permission denied") and sessions would not survive a restart.
        body += "user root\n"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"persistence true\npersistence_location {workdir}/\n"
        "max_queued_messages 100000\nmax_inflight_messages 100\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n" + body
    )
    srv = _spawn("mosquitto", [need("mosquitto"), "-c", str(conf)], port, workdir)
    return Mosquitto(srv)


def start_victoria(workdir: Path) -> Server:
    """VictoriaMetrics single node; /api/v2/write is InfluxDB-compatible."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        need("victoria-metrics"),
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={workdir}/data",
        "-retentionPeriod=1y",
        "-search.latencyOffset=0s",
        "-loggerLevel=ERROR",
    ]
    srv = _spawn("victoria-metrics", argv, port, workdir)
    wait_http(f"{srv.url}/health")
    return srv


def start_influxdb1(workdir: Path) -> Server:
    """InfluxDB 1.x (InfluxQL) for the Grafana board queries."""
    port = free_port()
    rpc = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f'bind-address = "127.0.0.1:{rpc}"\nreporting-disabled = true\n'
        f'[meta]\n  dir = "{workdir}/meta"\n'
        f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
    )
    srv = _spawn("influxd", [need("influxd"), "-config", str(conf)], port, workdir)
    wait_http(f"{srv.url}/ping")
    return srv


def postgres_admin_url() -> str:
    """The PostgreSQL server `make test` made sure is running (trust auth on loopback)."""
    return os.environ.get("WATTKEEPER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database(name: str) -> str:
    """Create a fresh PostgreSQL database and return its URL."""
    admin = postgres_admin_url()
    base = admin.rsplit("/", 1)[0]
    psql = need("psql")
    subprocess.run([psql, admin, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}"'], check=True, capture_output=True)
    subprocess.run([psql, admin, "-q", "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    return f"{base}/{name}"


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Stop a server on exit."""
    try:
        yield server
    finally:
        server.stop()
