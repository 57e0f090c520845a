"""`wattkeeper demo`: an MQTT broker, every simulator of the site and the service, on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import typer
import uvicorn

from service.api.server import Server
from service.app import create_app
from service.broker import EmbeddedBroker, pick_port, port_free
from service.config.settings import Settings
from service.config.site import MqttConfig, Site
from simulators.runner import Simulation


class _Server(Server):
    """uvicorn without its own signal handling: the demo stops its parts itself, in order."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29 takes SIGINT/SIGTERM here
        yield


def _check_ports(site: Site, http_port: int, sim_port: int) -> None:
    taken = [p for p in {http_port, sim_port} if not port_free(p)]
    taken += sorted({d.port for d in site.devices if d.driver == "modbus" and d.port and not port_free(d.port)})
    if taken:
        typer.echo(
            f"port(s) {', '.join(map(str, taken))} on 127.0.0.1 are in use (another demo running?); "
            "stop it or set WATTKEEPER_HTTP_PORT / WATTKEEPER_SIM_PORT",
            err=True,
        )
        raise typer.Exit(1)


async def _demo(site: Site, site_path: Path | None) -> None:
    settings = Settings()
    _check_ports(site, settings.http_port, settings.sim_port)
    broker: EmbeddedBroker | None = None
    mqtt_url = settings.mqtt_url
    if mqtt_url is None:
        broker = EmbeddedBroker(pick_port(1883))
        await broker.start()
        mqtt_url = broker.url
    site = site.model_copy(update={"mqtt": MqttConfig(url=mqtt_url)})
    settings = settings.model_copy(update={"mqtt_url": mqtt_url})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    private_sqlite_file(settings.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with Simulation(site, control_port=settings.sim_port, speed=1.0, seed=0):
            app = create_app(site, settings, site_path=site_path)
            server = _Server(
                uvicorn.Config(app, host="127.0.0.1", port=settings.http_port, log_level="warning", lifespan="on"),
                app.state.services.events,
            )
            serving = asyncio.create_task(server.serve())
            try:
                while not server.started and not serving.done() and not stop.is_set():  # noqa: ASYNC110 (uvicorn only offers a flag)
                    await asyncio.sleep(0.05)
                if serving.done():
                    serving.result()
                    return
                if not stop.is_set():
                    svc = app.state.services
                    key = await svc.store.create_key("admin", at=svc.clock.now(), label="demo")
                    typer.echo("")
                    typer.echo(f"wattkeeper demo — {site.site.name}")
                    typer.echo(f"  MQTT broker     {mqtt_url}{' (embedded)' if broker else ''}")
                    typer.echo(f"  simulators      http://127.0.0.1:{settings.sim_port}/sim/state")
                    typer.echo(f"  dashboard       http://127.0.0.1:{settings.http_port}/")
                    typer.echo(f"  admin API key   {key}")
                    typer.echo(f"  database        {settings.database_url}")
                    typer.echo("Ctrl-C stops everything.")
                    stop_wait = asyncio.create_task(stop.wait())
                    await asyncio.wait({serving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    stop_wait.cancel()
            finally:
                # The service stops first, while its devices still answer: stopping the simulators
                # (or the broker) under it would have it report every device offline on the way out.
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(serving, 60)  # the service stores and closes before anything else stops
    finally:
        if broker is not None:
            await broker.stop()


def private_sqlite_file(database_url: str) -> None:
    """Create a SQLite database file with mode 0600 before SQLite does (it would follow the umask):
    the store holds the audit, alarms and hashed API keys."""
    scheme, _, rest = database_url.partition("://")
    if scheme.split("+", 1)[0] != "sqlite" or not rest.startswith("/") or rest in ("/", "/:memory:"):
        return
    path = Path(rest[1:].split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def run_demo(site: Site, *, site_path: Path | None = None) -> None:
    """Run the demo until Ctrl-C."""
    os.environ.setdefault("WATTKEEPER_ENV", "development")
    asyncio.run(_demo(site, site_path))
