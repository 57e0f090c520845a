"""`wattkeeper collect`: refused clearly without a usable bus URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config.site import DEMO_SITE


@pytest.mark.parametrize(
    ("bus_url", "needle"),
    [
        (None, "collect needs WATTKEEPER_BUS_URL"),
        ("redis://127.0.0.1:6379", "WATTKEEPER_BUS_URL entry 1 is not nats://host:port"),
        ("nats://127.0.0.1:4222,http://x:1", "WATTKEEPER_BUS_URL entry 2 is not nats://host:port"),
    ],
)
def test_collect_without_a_usable_bus_url_exits_2(tmp_path: Path, bus_url: str | None, needle: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    if bus_url is not None:
        env["WATTKEEPER_BUS_URL"] = bus_url
    done = subprocess.run(
        [sys.executable, "-m", "service", "collect", "--site", str(DEMO_SITE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
