"""The `wattkeeper` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from service.compliance import check_configuration, check_site, render_table, unrated_energy_counters, with_rows
from service.site import DEMO_SITE, Site, SiteError, load_site

app = typer.Typer(
    help="wattkeeper: power monitoring and control for office sites that are important power customers.",
    no_args_is_help=True,
    add_completion=False,
)
report_app = typer.Typer(help="Reports from the state store.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(report_app, name="report")
app.add_typer(keys_app, name="keys")

log = logging.getLogger(__name__)

SiteOpt = Annotated[Path, typer.Option("--site", help="site file (YAML)", show_default=True)]


def _load(path: Path) -> Site:
    try:
        return load_site(path)
    except SiteError as exc:
        typer.echo(f"{path}: invalid site file ({len(exc.errors)} error(s)):", err=True)
        for line in exc.errors:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(2) from None


def _warn_unrated(site: Site) -> None:
    unrated = unrated_energy_counters(site)
    if unrated:
        log.warning(
            "no rated_kw for %s: their energy counter steps are not checked for plausibility", ", ".join(unrated)
        )


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        typer.echo(f"{name}={raw!r} is not a port number", err=True)
        raise typer.Exit(2) from None


def _start_time(text: str, site: Site) -> datetime:
    """--start: ISO 8601; without an offset it is the site's local time."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(f"--start {text!r} is not an ISO 8601 time (e.g. 2026-07-15T10:00 or 2026-07-15T02:00Z)", err=True)
        raise typer.Exit(2) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=site.site.tz)


@app.command("check")
def check(
    site: Annotated[Path, typer.Option("--site", help="site file (YAML)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Check the site's supply against the important-power-customer rules.

    Exit 0 when every rule passes (warnings allowed), 1 when a rule fails, 2 for an invalid file.
    """
    the_site = _load(site)
    report = with_rows(check_site(the_site), check_configuration(the_site))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(render_table(report))
    raise typer.Exit(1 if report.status == "FAIL" else 0)


@app.command("simulate")
def simulate(
    site: SiteOpt = DEMO_SITE,
    port: Annotated[int | None, typer.Option(help="control API port (default WATTKEEPER_SIM_PORT or 8100)")] = None,
    speed: Annotated[float, typer.Option(min=0.01, max=10000, help="simulated seconds per real second")] = 1.0,
    seed: Annotated[int, typer.Option(help="random seed; the same seed, start and speed give the same run")] = 0,
    start: Annotated[
        str | None,
        typer.Option(
            help="simulated start time, ISO 8601 (2026-07-15T10:00, in the site's timezone unless it carries an"
            " offset); default now"
        ),
    ] = None,
    generator_start_s: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=3600,
            help="seconds from crank to ready for every generator (default half its start_limit_s)",
        ),
    ] = None,
) -> None:
    """Run the device simulators of a site (Modbus TCP, MQTT) and their control API."""
    from simulators.runner import run

    the_site = _load(site)
    sim_port = port if port is not None else _env_port("WATTKEEPER_SIM_PORT", 8100)
    mqtt_url = os.environ.get("WATTKEEPER_MQTT_URL") or the_site.mqtt.url
    started = _start_time(start, the_site) if start is not None else None
    typer.echo(f"simulating {the_site.site.name}: control API on http://127.0.0.1:{sim_port}/sim/state")

    async def main() -> None:
        task = asyncio.create_task(
            run(
                the_site,
                port=sim_port,
                speed=speed,
                seed=seed,
                mqtt_url=mqtt_url,
                start=started,
                generator_start_s=generator_start_s,
            )
        )
        # SIGTERM (systemd, docker stop) ends the run like Ctrl-C: devices announce they go offline.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@app.command("serve")
def serve(
    site: Annotated[Path, typer.Option("--site", help="site file (YAML)")],
    port: Annotated[int | None, typer.Option(help="HTTP port (default WATTKEEPER_HTTP_PORT or 8000)")] = None,
) -> None:
    """Run the service: drivers, alarms, scheduler, API and dashboard."""
    from service.app import serve as run_service

    the_site = _load(site)
    _warn_unrated(the_site)
    http_port = port if port is not None else _env_port("WATTKEEPER_HTTP_PORT", 8000)
    run_service(the_site, site_path=site, port=http_port)


@app.command("demo")
def demo(site: SiteOpt = DEMO_SITE) -> None:
    """Run everything on this machine: a broker, the simulators and the service with SQLite."""
    from service.demo import run_demo

    the_site = _load(site)
    _warn_unrated(the_site)
    run_demo(the_site, site_path=site)


@app.command("collect")
def collect(site: Annotated[Path, typer.Option("--site", help="site file (YAML)")]) -> None:
    """Edge collector: run this site's drivers only and publish their readings on the bus
    (WATTKEEPER_BUS_URL); execute the site's commands arriving over it. Exit 3 when fenced."""
    from pydantic import ValidationError

    from service.bus_core import run_collector
    from service.settings import Settings

    the_site = _load(site)
    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    if not settings.bus_url:
        typer.echo("collect needs WATTKEEPER_BUS_URL (nats://host:port[,...])", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> int:
        task = asyncio.create_task(run_collector(the_site, settings))
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return 0

    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(main())
    raise typer.Exit(code)


@report_app.command("energy")
def report_energy(
    month: Annotated[str, typer.Option(help="month as YYYY-MM")],
    site: SiteOpt = DEMO_SITE,
    csv: Annotated[bool, typer.Option("--csv", help="CSV instead of a table")] = False,
) -> None:
    """Monthly kWh and time-of-use cost per department."""
    from service.reports import cli_energy_report

    raise typer.Exit(cli_energy_report(_load(site), month, as_csv=csv))


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="viewer, operator or admin")],
    name: Annotated[str, typer.Option(help="who or what the key is for")] = "",
) -> None:
    """Create an API key; it is printed once and stored hashed."""
    from service.keys import cli_create_key

    if role not in ("viewer", "operator", "admin"):
        typer.echo(f"--role must be viewer, operator or admin, not {role!r}", err=True)
        raise typer.Exit(2)
    raise typer.Exit(cli_create_key(role, name))


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: id, role, created, revoked (or live), label; never a key."""
    from service.keys import cli_list_keys

    raise typer.Exit(cli_list_keys())


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id, as `keys list` shows it")]) -> None:
    """Revoke an API key by id."""
    from service.keys import cli_revoke_key

    raise typer.Exit(cli_revoke_key(key_id))


def main() -> None:
    """Console-script entry point."""
    app()
