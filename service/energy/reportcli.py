"""`wattkeeper report violations` and `wattkeeper report quarter`: the administration office's reports
from the state store, as a table, CSV (for people with `--lang zh`, the default on a Chinese site) or
an xlsx file."""

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
from service.energy.reports import RollupTable
from service.energy.violations import machine_csv as violations_machine_csv
from service.energy.violations import sheets as violation_sheets
from service.energy.violations import text_table as violations_table
from service.energy.violations import violations_report
from service.store.db import Store, month_bounds

Output = Literal["table", "csv", "xlsx"]
R = TypeVar("R", bound=BaseModel)


def _database_url() -> str | None:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid WATTKEEPER_* setting: {exc.errors()[0]['msg']}", file=sys.stderr)
        return None
    url = make_url(async_database_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        print(
            f"no state store at {url.database}: run the service first, or set WATTKEEPER_DATABASE_URL",
            file=sys.stderr,
        )
        return None
    return settings.database_url


async def _with_store(database_url: str, build: Callable[[Store, RollupTable, datetime], Awaitable[R]]) -> R:
    store = Store(database_url)
    rollups = RollupTable(database_url)
    await store.open()
    try:
        return await build(store, rollups, SystemClock().now())
    finally:
        await rollups.close()
        await store.close()


def _emit(
    report: R,
    site: Site,
    output: Output,
    lang: Lang | None,
    path: Path | None,
    name: str,
    render: tuple[Callable[[R, Lang], list[Sheet]], Callable[[R], str], Callable[[R], str]],
) -> int:
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


def cli_violations(site: Site, month: str, output: Output, *, lang: Lang | None, path: Path | None) -> int:
    """Print or write a month's violations and fines; the exit code."""
    try:
        start, _ = month_bounds(month, site.site.tz)
    except ValueError:
        print(f"--month: '{month}' is not a month YYYY-MM (e.g. 2026-03)", file=sys.stderr)
        return 2
    if start > SystemClock().now():
        print(f"--month: {month} has not begun yet", file=sys.stderr)
        return 2
    url = _database_url()
    if url is None:
        return 1

    async def build(store: Store, _: RollupTable, now: datetime) -> BaseModel:
        return await violations_report(store, site, month, now=now)

    report = asyncio.run(_with_store(url, build))
    render = (violation_sheets, violations_machine_csv, lambda r: violations_table(r, site))
    return _emit(report, site, output, lang, path, f"violations-{site.site.id}-{month}", render)  # type: ignore[arg-type]


def cli_quarter(site: Site, quarter: str, output: Output, *, lang: Lang | None, path: Path | None) -> int:
    """Print or write a quarter's summary; the exit code."""
    try:
        start, _ = quarter_bounds(quarter, site)
    except ValueError as exc:
        print(f"--quarter: {exc}", file=sys.stderr)
        return 2
    if start > SystemClock().now():
        print(f"--quarter: {quarter} has not begun yet", file=sys.stderr)
        return 2
    url = _database_url()
    if url is None:
        return 1

    async def build(store: Store, rollups: RollupTable, now: datetime) -> BaseModel:
        return await build_quarterly(store, site, quarter, now=now, rollups=rollups)

    report = asyncio.run(_with_store(url, build))
    render = (quarter_sheets, quarter_machine_csv, quarter_table)
    return _emit(report, site, output, lang, path, f"quarterly-{site.site.id}-{quarter}", render)  # type: ignore[arg-type]
