"""Shared fixtures: the real servers the tests talk to, started once per session on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.smtp import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "deploy" / "sites" / "demo.yaml"


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


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty PostgreSQL database (postgresql://... URL) for one test."""
    return servers.create_database(f"wk_test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback collecting messages (`.port`, `.messages`)."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
