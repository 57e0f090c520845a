"""Real servers for the tests, each on a free loopback port with its data in a temporary directory."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    user: str | None = None  # run as this system user (a server that refuses to run as root)
    stop_signal: int = signal.SIGTERM

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Ask the server to stop and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
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
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, **_as_user(self.user)
            )
        wait_port(self.port)


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as `user` with that user's group only (no root groups)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


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


def start_nats(workdir: Path) -> Server:
    """nats-server with JetStream, its store (file storage) in workdir/jetstream; `.port`,
    `nats_url(srv)` for its URL. `srv.start()` restarts it with the same store."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [need("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir / "jetstream")]
    return _spawn("nats-server", argv, port, workdir)


def nats_url(server: Server) -> str:
    """The nats:// URL of a server started by start_nats."""
    return f"nats://127.0.0.1:{server.port}"


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program (initdb, postgres): Debian keeps them out of PATH, per version."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name.split(".")[0]))
    for directory in reversed(versions):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return need(name)


# Loopback only; and test data is thrown away, so no waiting for the disk.
PG_SETTINGS = (
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
)


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A PostgreSQL server of one's own on a free loopback port, its data in a temporary directory
    removed afterwards; yields the admin URL (trust auth, user postgres, database postgres).

    initdb and postgres refuse to run as root: as root they run as the `postgres` system user, in a
    directory that user owns (outside pytest's temporary tree, which only root may enter).
    """
    user = "postgres" if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="wattkeeper-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
        data = workdir / "data"
        initdb = [postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        done = subprocess.run(
            [*initdb, "-E", "UTF8", "--no-locale", "--no-sync"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
            **_as_user(user),
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        port = free_port()
        argv = [postgres_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(workdir)]
        for setting in PG_SETTINGS:
            argv += ["-c", setting]
        log = workdir / "postgres.log"
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
        server = Server("postgres", subprocess.Popen(["true"]), port, workdir, argv, log, user, signal.SIGINT)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with running(server):
            try:
                server.start()
                _wait_postgres(url)
            except TimeoutError as exc:
                raise RuntimeError(f"{exc}; its log:\n{log.read_text(errors='replace')[-3000:]}") from None
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_postgres(url: str, timeout_s: float = 60.0) -> None:
    # The port opens before the server accepts sessions ("the database system is starting up").
    psql = need("psql")
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run([psql, url, "-qAt", "-c", "SELECT 1"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL at {url} did not accept sessions: {done.stderr.strip()}")
        time.sleep(0.2)


def postgres_admin_url() -> str:
    """Admin URL of the tests' PostgreSQL: WATTKEEPER_TEST_POSTGRES, which the `postgres_admin`
    fixture sets to the server it started unless it was given."""
    url = os.environ.get("WATTKEEPER_TEST_POSTGRES")
    if not url:
        raise RuntimeError("no PostgreSQL for the tests: use the postgres_admin or postgres_url fixture")
    return url


def create_database(name: str, admin_url: str | None = None) -> str:
    """Create a fresh PostgreSQL database and return its URL."""
    admin = admin_url or postgres_admin_url()
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
