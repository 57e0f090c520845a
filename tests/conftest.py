"""Shared fixtures: the real servers the tests talk to, started once per session on loopback."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

from service.config.site import MqttConfig, Site, load_site
from service.store.db import Store
from tests import servers
from tests.smtp import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "deploy" / "sites" / "demo.yaml"

# Property tests and schemathesis draw the same examples every run by default, so `make test` on a
# clean checkout passes or fails for the code, not for the draw, and a failure reproduces; and no
# test has a per-example deadline (these machines are shared and noisy). `HYPOTHESIS_PROFILE=explore`
# draws new examples each run, to look for what the repeatable set does not reach.
settings.register_profile("repeatable", derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# A test that hangs is ended by pytest-timeout (300 s), whose report shows the threads, not the
# asyncio tasks, so it cannot say what a coroutine waits for. STALL_DUMP_S before that, every task
# of the running event loops prints its stack into the test's captured output.
STALL_DUMP_S = 240.0
_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_run_forever = asyncio.BaseEventLoop.run_forever


def _tracked_run_forever(self: asyncio.BaseEventLoop) -> None:
    _LOOPS.add(self)
    _run_forever(self)


asyncio.BaseEventLoop.run_forever = _tracked_run_forever  # type: ignore[method-assign]


def _task_stacks() -> str:
    out = io.StringIO()
    for loop in list(_LOOPS):
        if loop.is_closed() or not loop.is_running():
            continue
        try:
            tasks = list(asyncio.all_tasks(loop))
        except RuntimeError as exc:  # the loop's task set changed under us too often
            out.write(f"(tasks not listed: {exc})\n")
            continue
        for task in tasks:
            out.write(f"--- {task!r}\n")
            task.print_stack(limit=25, file=out)
    return out.getvalue()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    finished = threading.Event()

    def watch() -> None:
        if not finished.wait(STALL_DUMP_S):
            sys.stderr.write(f"\n{item.nodeid} still running after {STALL_DUMP_S:g} s; its asyncio tasks:\n")
            sys.stderr.write(_task_stacks())
            sys.stderr.flush()

    threading.Thread(target=watch, name="stall-dump", daemon=True).start()
    try:
        yield
    finally:
        finished.set()


@pytest.fixture(scope="session")
def demo_site_path() -> Path:
    """The shipped demo site file."""
    return DEMO_SITE


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Mosquitto]:
    """A Mosquitto broker with persistence, anonymous access (`.host`, `.port`, `.url`)."""
    broker = servers.start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    with servers.running(broker.server):
        yield broker


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """VictoriaMetrics (`.url`); `/api/v2/write` takes InfluxDB line protocol."""
    with servers.running(servers.start_victoria(tmp_path_factory.mktemp("victoria"))) as srv:
        yield srv


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """InfluxDB 1.x (`.url`) for InfluxQL."""
    with servers.running(servers.start_influxdb1(tmp_path_factory.mktemp("influxdb"))) as srv:
        yield srv


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    """Admin URL (postgresql://...) of a PostgreSQL server: WATTKEEPER_TEST_POSTGRES when set, else
    one started for this session on a free loopback port with its data in a temporary directory."""
    given = os.environ.get("WATTKEEPER_TEST_POSTGRES")
    if given:
        yield given
        return
    with servers.private_postgres() as url:
        # Subprocesses the tests start find the same server through the environment.
        os.environ["WATTKEEPER_TEST_POSTGRES"] = url
        try:
            yield url
        finally:
            os.environ.pop("WATTKEEPER_TEST_POSTGRES", None)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[servers.Server]:
    """A nats-server with JetStream of one's own for one test, on a free loopback port, its store
    in a temporary directory (never the one a machine may run on 4222); `servers.nats_url(srv)`."""
    with servers.running(servers.start_nats(tmp_path / "nats")) as srv:
        yield srv


@pytest.fixture
def postgres_url(postgres_admin: str) -> str:
    """A fresh, empty PostgreSQL database (postgresql://... URL) for one test."""
    return servers.create_database(f"wk_test_{uuid.uuid4().hex[:12]}", postgres_admin)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An empty state store in SQLite (tests that need PostgreSQL too define their own)."""
    s = Store(f"sqlite:///{tmp_path}/wk.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback collecting messages (`.port`, `.messages`)."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def site_for_test(mqtt_url: str, path: Path = DEMO_SITE) -> Site:
    """A site file with its Modbus devices moved to free loopback ports and MQTT pointed at `mqtt_url`."""
    site = load_site(path)
    ports: dict[tuple[str, int], int] = {}
    devices = []
    for dev in site.devices:
        if dev.driver == "modbus" and dev.port is not None:
            key = (dev.host or "127.0.0.1", dev.port)
            if key not in ports:
                # free_port() may hand out a port again once released: keep the site's ports distinct.
                port = servers.free_port()
                while port in ports.values():
                    port = servers.free_port()
                ports[key] = port
            dev = dev.model_copy(update={"port": ports[key]})
        devices.append(dev)
    return site.model_copy(update={"devices": devices, "mqtt": MqttConfig(url=mqtt_url)})


def write_site(site: Site, path: Path) -> Path:
    """Write a Site back to a YAML file (for CLI and subprocess tests)."""
    path.write_text(yaml.safe_dump(site.model_dump(mode="json", by_alias=True), allow_unicode=True, sort_keys=False))
    return path


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[servers.Mosquitto]:
    """A broker of one's own for one test (no retained messages from other tests)."""
    broker = servers.start_mosquitto(tmp_path / "mosquitto")
    with servers.running(broker.server):
        yield broker


@pytest.fixture
def demo_site(fresh_mosquitto: servers.Mosquitto) -> Site:
    """The demo site on free Modbus ports, its MQTT devices on a fresh broker."""
    return site_for_test(fresh_mosquitto.url)
