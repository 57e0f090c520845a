"""`simulate --speed N` (N > 1) and `serve` of the same site on one machine: whichever starts second
refuses with the reason, instead of the service rejecting every energy step as implausible."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import typer

from service import cli
from service.config.site import Site, load_site
from tests.conftest import DEMO_SITE, ROOT, write_site
from tests.harness import running_service
from tests.servers import free_port, wait_http
from tests.service.conftest import serve_http

WK = [sys.executable, "-m", "service"]


def env_with(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    return env | {"PYTHONPATH": str(ROOT), **values}


def state_server(speed: float, device_ids: list[str]) -> type[BaseHTTPRequestHandler]:
    body = json.dumps({"speed": speed, "devices": {d: {"online": True} for d in device_ids}}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/sim/state" else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.mark.parametrize(
    ("speed", "same_site", "refused"), [(60, True, True), (1, True, False), (60, False, False), (0.5, True, False)]
)
def test_serve_refuses_only_a_fast_simulation_of_its_own_site(speed: float, same_site: bool, refused: bool) -> None:
    site = load_site(DEMO_SITE)
    ids = [d.id for d in site.devices] if same_site else ["other-meter"]
    with serve_http(state_server(speed, ids)) as url:
        port = int(url.rsplit(":", 1)[1])
        if refused:
            with pytest.raises(typer.Exit) as exit_:
                cli._refuse_fast_simulation(site, port)
            assert exit_.value.exit_code == 2
        else:
            cli._refuse_fast_simulation(site, port)


def test_serve_exits_2_next_to_simulate_speed_60(demo_site: Site, tmp_path: Path) -> None:
    site_file = write_site(demo_site, tmp_path / "site.yaml")
    sim_port = free_port()
    mqtt_url = demo_site.mqtt.url
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "simulate",
            "--site",
            str(site_file),
            "--speed",
            "60",
            "--port",
            str(sim_port),
        ],
        env=env_with(WATTKEEPER_MQTT_URL=mqtt_url),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/sim/state", timeout_s=60)
        done = subprocess.run(
            [sys.executable, "-m", "service", "serve", "--site", str(site_file), "--port", str(free_port())],
            env=env_with(WATTKEEPER_SIM_PORT=str(sim_port), WATTKEEPER_DATABASE_URL=f"sqlite:///{tmp_path}/wk.db"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "run at --speed 60: the service counts energy" in done.stderr
    assert not (tmp_path / "wk.db").exists()


async def test_simulate_fast_exits_2_next_to_the_service(demo_site: Site, tmp_path: Path) -> None:
    site_file = write_site(demo_site, tmp_path / "site.yaml")
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        http_port = svc.url.rsplit(":", 1)[1]
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "service", "simulate", "--site", str(site_file), "--speed", "60"],
            env=env_with(WATTKEEPER_HTTP_PORT=http_port, WATTKEEPER_SIM_PORT=str(free_port())),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                _, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 2, stderr[-2000:]
    assert f"wattkeeper serve runs {demo_site.site.id}" in stderr
    assert "simulate with --speed 1 while it runs" in stderr
