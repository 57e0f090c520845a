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
from typing import Annotated, Literal, NoReturn

import typer
import yaml

from service.alarms.engine import effective_table
from service.config.compliance import (
    check_configuration,
    check_site,
    render_alarm_table,
    render_table,
    supply_roles,
    unrated_energy_counters,
    with_rows,
)
from service.config.office import office_summary, render_office
from service.config.site import DEMO_SITE, Site, SiteError, load_site

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
    from service.config.settings import setting_from_env

    raw = setting_from_env(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        typer.echo(f"{name}={raw!r} is not a port number", err=True)
        raise typer.Exit(2) from None


def _refuse_unsimulated(site: Site) -> None:
    """Exit 2 naming every device no simulator models (it would get no listener yet look online)."""
    from simulators.mqtt_face import SIMULATED_PROFILES
    from simulators.registers import REGISTER_MAPS
    from simulators.runner import unsimulated

    missing = unsimulated(site)
    if missing:
        typer.echo(f"cannot simulate {len(missing)} device(s): {', '.join(missing)}", err=True)
        typer.echo(
            f"  the simulators model {', '.join(sorted({*REGISTER_MAPS, *SIMULATED_PROFILES}))};"
            " run the site's real devices, or leave these out of the file you simulate",
            err=True,
        )
        raise typer.Exit(2)


SPEED_CLASH = (
    "the service counts energy and times alarms on the real clock, so it cannot follow a faster "
    "simulation (its energy steps would be refused as implausible, its alarm delays would be wrong)"
)


def _probe_json(url: str) -> dict[str, object] | None:
    """GET a local JSON endpoint; None when nothing answers there (the usual case)."""
    import httpx

    try:
        r = httpx.get(url, timeout=1.0)
        body = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _refuse_fast_simulation(site: Site, sim_port: int) -> None:
    """`serve` next to a running `simulate --speed N` (N > 1) of the same site: exit 2, saying why."""
    state = _probe_json(f"http://127.0.0.1:{sim_port}/sim/state")
    if state is None:
        return
    devices = state.get("devices")
    same_site = isinstance(devices, dict) and set(devices) == {d.id for d in site.devices}
    speed = state.get("speed")
    if same_site and isinstance(speed, int | float) and speed > 1:
        typer.echo(
            f"the simulators of {site.site.id} on 127.0.0.1:{sim_port} run at --speed {speed:g}: {SPEED_CLASH}; "
            "restart them with --speed 1 (the default) to run the service on them",
            err=True,
        )
        raise typer.Exit(2)


def _refuse_next_to_service(site: Site, speed: float) -> None:
    """`simulate --speed N` (N > 1) while the service of the same site runs here: exit 2, saying why.

    Slow motion (N < 1) is allowed: the meters then step less than the real clock allows, never more.
    """
    if speed <= 1:
        return
    http_port = _env_port("WATTKEEPER_HTTP_PORT", 8000)
    health = _probe_json(f"http://127.0.0.1:{http_port}/healthz")
    if health is not None and health.get("site") == site.site.id:
        typer.echo(
            f"wattkeeper serve runs {site.site.id} on 127.0.0.1:{http_port}: {SPEED_CLASH}; "
            "simulate with --speed 1 while it runs, or stop it for a fast run",
            err=True,
        )
        raise typer.Exit(2)


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
    """Check the site's supply against the important-power-customer rules; show the effective alarm settings.

    Each rule names the article it enforces. The table fits the terminal (long details wrap).
    Exit 0 when every rule passes (warnings allowed), 1 when a rule fails, 2 for an invalid file.
    """
    the_site = _load(site)
    report = with_rows(check_site(the_site), check_configuration(the_site) + supply_roles(the_site))
    alarms = effective_table(the_site)
    if as_json:
        payload = {**report.to_dict(), "office": office_summary(the_site), "alarms": alarms}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        typer.echo(render_table(report) + "\n" + render_office(the_site))
        typer.echo(render_alarm_table(alarms))
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
    from service.config.settings import setting_from_env
    from simulators.runner import run

    the_site = _load(site)
    _refuse_unsimulated(the_site)
    _refuse_next_to_service(the_site, speed)
    sim_port = port if port is not None else _env_port("WATTKEEPER_SIM_PORT", 8100)
    mqtt_url = setting_from_env("WATTKEEPER_MQTT_URL") or the_site.mqtt.url
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
    _refuse_fast_simulation(the_site, _env_port("WATTKEEPER_SIM_PORT", 8100))
    http_port = port if port is not None else _env_port("WATTKEEPER_HTTP_PORT", 8000)
    run_service(the_site, site_path=site, port=http_port)


@app.command("demo")
def demo(site: SiteOpt = DEMO_SITE) -> None:
    """Run everything on this machine: a broker, the simulators and the service with SQLite."""
    from service.demo import run_demo

    the_site = _load(site)
    _refuse_unsimulated(the_site)
    _warn_unrated(the_site)
    run_demo(the_site, site_path=site)


@app.command("collect")
def collect(site: Annotated[Path, typer.Option("--site", help="site file (YAML)")]) -> None:
    """Edge collector: run this site's drivers only and publish their readings on the bus
    (WATTKEEPER_BUS_URL); execute the site's commands arriving over it. Exit 3 when fenced."""
    from pydantic import ValidationError

    from service.bus.runtime import run_collector
    from service.config.settings import Settings

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


MonthOpt = Annotated[str, typer.Option(help="month as YYYY-MM")]
CsvFlag = Annotated[bool, typer.Option("--csv", help="CSV instead of a table")]
XlsxFlag = Annotated[bool, typer.Option("--xlsx", help="write an xlsx file")]


@report_app.command("energy")
def report_energy(month: MonthOpt, site: SiteOpt = DEMO_SITE, csv: CsvFlag = False) -> None:
    """Monthly kWh and time-of-use cost per department."""
    from service.energy.reportcli import cli_energy_report

    raise typer.Exit(cli_energy_report(_load(site), month, as_csv=csv))


LangOpt = Annotated[
    str | None, typer.Option("--lang", help="csv: zh for people (BOM, Chinese headers), en for programs")
]
XlsxOut = Annotated[Path | None, typer.Option("--output", "-o", help="xlsx file to write (default: in .)")]


def _office_report(
    command: str, period: str, site: Path, as_csv: bool, as_xlsx: bool, lang: str | None, output: Path | None
) -> NoReturn:
    """Run `report violations` or `report quarter` for a period after checking the output options."""
    from service.energy.reportcli import cli_quarter, cli_violations

    if as_csv and as_xlsx:
        typer.echo("--csv and --xlsx: choose one", err=True)
        raise typer.Exit(2)
    chosen: Literal["zh", "en"] | None = "zh" if lang == "zh" else "en" if lang == "en" else None
    if lang is not None and chosen is None:
        typer.echo(f"--lang must be zh or en, not {lang!r}", err=True)
        raise typer.Exit(2)
    kind: Literal["table", "csv", "xlsx"] = "xlsx" if as_xlsx else "csv" if as_csv else "table"
    run = cli_violations if command == "violations" else cli_quarter
    raise typer.Exit(run(_load(site), period, kind, lang=chosen, path=output))


@report_app.command("violations")
def report_violations(
    month: MonthOpt,
    site: SiteOpt = DEMO_SITE,
    csv: CsvFlag = False,
    xlsx: XlsxFlag = False,
    lang: LangOpt = None,
    output: XlsxOut = None,
) -> None:
    """Violations and fines per department for a month, with every incident."""
    _office_report("violations", month, site, csv, xlsx, lang, output)


@report_app.command("quarter")
def report_quarter(
    quarter: Annotated[str, typer.Option(help="quarter as YYYY-Qn, e.g. 2026-Q1")],
    site: SiteOpt = DEMO_SITE,
    csv: CsvFlag = False,
    xlsx: XlsxFlag = False,
    lang: LangOpt = None,
    output: XlsxOut = None,
) -> None:
    """The quarterly summary: energy vs previous quarter and a year before, violations, supply, hazards."""
    _office_report("quarter", quarter, site, csv, xlsx, lang, output)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="viewer, operator or admin")],
    name: Annotated[str, typer.Option(help="who or what the key is for")] = "",
    create_store: Annotated[
        bool, typer.Option("--create-store", help="make a new state store if WATTKEEPER_DATABASE_URL names none yet")
    ] = False,
) -> None:
    """Create an API key; it is printed once and stored hashed."""
    from service.auth.keys import cli_create_key

    if role not in ("viewer", "operator", "admin"):
        typer.echo(f"--role must be viewer, operator or admin, not {role!r}", err=True)
        raise typer.Exit(2)
    raise typer.Exit(cli_create_key(role, name, create_store=create_store))


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: id, role, created, revoked (or live), label; never a key."""
    from service.auth.keys import cli_list_keys

    raise typer.Exit(cli_list_keys())


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id, as `keys list` shows it")]) -> None:
    """Revoke an API key by id."""
    from service.auth.keys import cli_revoke_key

    raise typer.Exit(cli_revoke_key(key_id))


@app.command("discover")
def discover(
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="broker URL to listen on, mqtt://[user:pass@]host:port")
    ] = None,
    modbus: Annotated[
        list[str] | None,
        typer.Option("--modbus", help="HOST:PORT[/UNITS] to probe, e.g. 192.168.1.20:502/1-3 (repeatable)"),
    ] = None,
    site: Annotated[Path | None, typer.Option("--site", help="print only what this site file lacks or misses")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of site-file entries")] = False,
    listen_s: Annotated[float, typer.Option(min=0.1, max=600, help="seconds to listen on the broker")] = 5.0,
    rate: Annotated[float, typer.Option(min=0.1, max=1000, help="Modbus requests per second at most")] = 20.0,
    timeout_s: Annotated[float, typer.Option(min=0.05, max=30, help="seconds to wait for a Modbus answer")] = 1.0,
) -> None:
    """Find devices on the broker and on Modbus and print them as site-file `devices:` entries.

    Modbus probing only reads (FC03/FC04), one request at a time, at most --rate a second.
    """
    from drivers.probe import parse_target
    from service.onboard.discover import Findings, compare, render_json, render_text
    from service.onboard.discover import discover as run_discovery

    if not mqtt and not modbus:
        typer.echo("give --mqtt URL and/or --modbus HOST:PORT[/UNITS]", err=True)
        raise typer.Exit(2)
    try:
        targets = [parse_target(t) for t in modbus or []]
    except ValueError as exc:
        typer.echo(f"--modbus {exc}", err=True)
        raise typer.Exit(2) from None
    the_site = _load(site) if site is not None else None
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a port that refuses is reported below, once
    try:
        found = asyncio.run(run_discovery(mqtt, targets, listen_s=listen_s, rate_per_s=rate, timeout_s=timeout_s))
    except (OSError, ValueError) as exc:  # the broker refused or went away; a URL that is not mqtt://
        typer.echo(f"discover: {exc}", err=True)
        raise typer.Exit(1) from None
    findings = compare(found, the_site, mqtt=bool(mqtt), targets=targets) if the_site else Findings(found=found)
    if as_json:
        typer.echo(render_json(findings))
    else:
        typer.echo(render_text(findings), nl=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the site file (for editors: `wattkeeper schema > deploy/site.schema.json`)."""
    from service.config.schema import render

    typer.echo(render(), nl=False)


@app.command("config")
def config(
    site: Annotated[Path | None, typer.Option("--site", help="site file (YAML) whose settings to include")] = None,
) -> None:
    """Print the effective settings and where each came from: environment, .env, site file, default.

    Secrets are masked. Exit 2 when a setting is invalid (the command that reads it would refuse it).
    """
    from pydantic import ValidationError

    from service.config.credentials import read_dotenv
    from service.config.settings import Settings, effective_settings, site_references

    site_values: dict[str, str] = {}
    refs: list[str] = []
    site_problems: list[str] = []
    if site is not None:
        try:
            text = site.read_text(encoding="utf-8")
            raw = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            typer.echo(f"{site}: cannot read: {exc}", err=True)
            raise typer.Exit(2) from None
        raw = raw if isinstance(raw, dict) else {}
        mqtt = raw.get("mqtt")
        if isinstance(mqtt, dict) and isinstance(mqtt.get("url"), str):
            site_values["mqtt.url"] = mqtt["url"]
        if isinstance(raw.get("profiles_dir"), str):
            site_values["profiles_dir"] = str(site.parent / raw["profiles_dir"])
        refs = site_references(raw)
        try:
            load_site(site)
        except SiteError as exc:
            site_problems = exc.errors
    dotenv = Path(".env")
    typer.echo(f".env: {dotenv.resolve()}" + ("" if dotenv.is_file() else " (none; not read)"))
    typer.echo(
        f"site file: {site.resolve()}" if site is not None else "site file: (none given; --site F adds its keys)"
    )
    rows: list[tuple[str, str, str, str]] = [
        (e.env, e.shown, e.origin, e.note) for e in effective_settings(site_values)
    ]
    dotenv_values = read_dotenv()
    for name in refs:
        origin = "environment" if name in os.environ else ".env" if name in dotenv_values else "not set"
        value = os.environ.get(name, dotenv_values.get(name, ""))
        rows.append((name, "*** (set)" if value else "(none)", origin, "named by the site file"))
    widths = [max(len(r[i]) for r in [("setting", "value", "from", ""), *rows]) for i in range(3)]
    for row in [("setting", "value", "from", ""), *rows]:
        typer.echo(("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)) + f"  {row[3]}").rstrip())
    status = 0
    for line in site_problems:
        typer.echo(f"invalid: {line}", err=True)
        status = 2
    try:
        Settings()
    except ValidationError as exc:
        for err in exc.errors():
            where = "WATTKEEPER_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "settings"
            typer.echo(f"invalid: {where}: {err['msg'].removeprefix('Value error, ')}", err=True)
        status = 2
    raise typer.Exit(status)


@app.command("broker-config")
def broker_config(
    site: Annotated[Path, typer.Option("--site", help="site file (YAML)")],
    out: Annotated[Path, typer.Option("--out", help="folder for acl, passwd and passwords")] = Path("broker"),
    simulators: Annotated[
        bool, typer.Option("--simulators", help="also an account for the device simulators (demo, commissioning)")
    ] = False,
) -> None:
    """Mosquitto password file and ACL for the site's devices, one account each.

    Writes OUT/acl, OUT/passwd (hashed, for Mosquitto's password_file) and OUT/passwords (0600: each
    account's password, to configure the devices; kept when run again). wattkeeper's own password is
    MQTT_WATTKEEPER_PASSWORD when set. Exit 2 for an invalid site file or a device that cannot have
    an account of its own.
    """
    from service.config.brokerconfig import BrokerConfigError, write_broker_config

    the_site = _load(site)
    try:
        found = write_broker_config(
            the_site, out, simulators=simulators, service_password=os.environ.get("MQTT_WATTKEEPER_PASSWORD")
        )
    except BrokerConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    width = max(len(a.name) for a in found)
    for account in found:
        typer.echo(f"{account.name:<{width}}  {account.what}")
    typer.echo(f"wrote {out / 'acl'}, {out / 'passwd'} and {out / 'passwords'} (0600) for {len(found)} accounts")


@app.command("rotate-session-secret")
def rotate_session_secret() -> None:
    """Write a new dashboard session secret (<data_dir>/session.key, 0600): every dashboard session ends.

    A running service picks it up at its next request. Exit 1 when WATTKEEPER_SESSION_SECRET is set
    (then change that variable and restart instead).
    """
    from service.auth.sessions import SECRET_FILE, rotate_secret
    from service.config.settings import Settings

    settings = Settings()
    if settings.session_secret is not None:
        typer.echo("WATTKEEPER_SESSION_SECRET is set: change it and restart the service to rotate", err=True)
        raise typer.Exit(1)
    path = settings.data_dir / SECRET_FILE
    rotate_secret(path)
    typer.echo(f"new session secret in {path} (mode 0600); every dashboard session has ended")


def main() -> None:
    """Console-script entry point."""
    app()
