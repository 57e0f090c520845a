"""`wattkeeper report energy`, `report violations` and `report quarter`: reports from the state store.

The administration office's two (violations, quarter) come as a table, CSV (for people with
`--lang zh`, the default on a Chinese site) or an xlsx file; the energy report as a table or CSV."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import make_url

from service.clock import SystemClock
from service.config.settings import Settings, async_database_url
from service.config.site import Site
from service.energy.exports import Lang, Sheet, default_lang, people_csv, xlsx
from service.energy.quarterly import build_quarterly, quarter_bounds
from service.energy.quarterly import machine_csv as quarter_machine_csv
from service.energy.quarterly import sheets as quarter_sheets
from service.energy.quarterly import text_table as quarter_table
from service.energy.reports import EnergyReport, energy_report, report_csv, report_table
from service.energy.violations import machine_csv as violations_machine_csv
from service.energy.violations import sheets as violation_sheets
from service.energy.violations import text_table as violations_table
from service.energy.violations import violations_report
from service.store.db import Store, month_bounds

Output = Literal["table", "csv", "xlsx"]
R = TypeVar("R", bound=BaseModel)


def _month_start(month: str, site: Site) -> datetime | None:
    """The month's first instant, or None (said on stderr) when it is not a month."""
    try:
        return month_bounds(month, site.site.tz)[0]
    except ValueError:
        print(f"--month: '{month}' is not a month YYYY-MM (e.g. 2026-03)", file=sys.stderr)
        return None


def _not_begun(option: str, period: str, start: datetime) -> bool:
    """Whether the period lies in the future (said on stderr): there is nothing to report yet."""
    if start > SystemClock().now():
        print(f"{option}: {period} has not begun yet", file=sys.stderr)
        return True
    return False


def _from_store(build: Callable[[Store, datetime], Awaitable[R]], *, invalid_settings: int = 1) -> R | int:
    """The report `build` makes from the state store now, or the exit code when there is no store to read."""
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid WATTKEEPER_* setting: {exc.errors()[0]['msg']}", file=sys.stderr)
        return invalid_settings
    url = make_url(async_database_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        print(
            f"no state store at {url.database}: run the service first, or set WATTKEEPER_DATABASE_URL",
            file=sys.stderr,
        )
        return 1
    return asyncio.run(_with_store(settings.database_url, build))


async def _with_store(database_url: str, build: Callable[[Store, datetime], Awaitable[R]]) -> R:
    store = Store(database_url)
    await store.open()
    try:
        return await build(store, SystemClock().now())
    finally:
        await store.close()


def _emit(
    report: R | int,
    site: Site,
    output: Output,
    lang: Lang | None,
    path: Path | None,
    name: str,
    render: tuple[Callable[[R, Lang], list[Sheet]], Callable[[R], str], Callable[[R], str]],
) -> int:
    if isinstance(report, int):
        return report  # the exit code of a report that could not be read
    to_sheets, machine, table = render
    chosen = lang or default_lang(site)
    tz = site.site.tz
    if output == "xlsx":
        target = path or Path(f"{name}.xlsx")
        target.write_bytes(xlsx(to_sheets(report, chosen), chosen, tz))
        print(target)
    elif output == "csv" and chosen == "zh":
        sys.stdout.buffer.write(people_csv(to_sheets(report, chosen), chosen, tz))
        sys.stdout.flush()
    elif output == "csv":
        print(machine(report), end="")
    else:
        print(table(report))
    return 0


def cli_energy_report(site: Site, month: str, *, as_csv: bool = False) -> int:
    """`wattkeeper report energy`: print the month's report from the state store; the exit code."""
    if _month_start(month, site) is None:
        return 2

    async def build(store: Store, now: datetime) -> EnergyReport:
        return await energy_report(store, site, month, now=now)

    report = _from_store(build, invalid_settings=2)
    if isinstance(report, int):
        return report
    print(report_csv(report) if as_csv else report_table(report), end="" if as_csv else "\n")
    return 0


def cli_violations(site: Site, month: str, output: Output, *, lang: Lang | None, path: Path | None) -> int:
    """Print or write a month's violations and fines; the exit code."""
    start = _month_start(month, site)
    if start is None or _not_begun("--month", month, start):
        return 2

    async def build(store: Store, now: datetime) -> BaseModel:
        return await violations_report(store, site, month, now=now)

    render = (violation_sheets, violations_machine_csv, lambda r: violations_table(r, site))
    return _emit(_from_store(build), site, output, lang, path, f"violations-{site.site.id}-{month}", render)  # type: ignore[arg-type]


def cli_quarter(site: Site, quarter: str, output: Output, *, lang: Lang | None, path: Path | None) -> int:
    """Print or write a quarter's summary; the exit code."""
    try:
        start, _ = quarter_bounds(quarter, site)
    except ValueError as exc:
        print(f"--quarter: {exc}", file=sys.stderr)
        return 2
    if _not_begun("--quarter", quarter, start):
        return 2

    async def build(store: Store, now: datetime) -> BaseModel:
        return await build_quarterly(store, site, quarter, now=now)

    render = (quarter_sheets, quarter_machine_csv, quarter_table)
    return _emit(_from_store(build), site, output, lang, path, f"quarterly-{site.site.id}-{quarter}", render)  # type: ignore[arg-type]
