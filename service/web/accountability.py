"""What the dashboard's accountability view needs beside the reports: the months and quarters to
pick from, and a picked period checked (bad or future ones fall back to the current one)."""

from __future__ import annotations

from datetime import datetime

from service.config.site import Site
from service.energy.quarterly import quarter_bounds, quarter_of
from service.energy.reports import month_of, previous_month
from service.store.db import month_bounds

PICK_MONTHS = 24
PICK_QUARTERS = 8


def recent_months(site: Site, now: datetime) -> list[str]:
    """This month and the PICK_MONTHS - 1 before it, newest first."""
    out = [month_of(now, site)]
    while len(out) < PICK_MONTHS:
        out.append(previous_month(out[-1]))
    return out


def recent_quarters(site: Site, now: datetime) -> list[str]:
    """This quarter and the PICK_QUARTERS - 1 before it, newest first."""
    year, q = (int(x) for x in quarter_of(now, site).split("-Q"))
    out = []
    for _ in range(PICK_QUARTERS):
        out.append(f"{year}-Q{q}")
        year, q = (year - 1, 4) if q == 1 else (year, q - 1)
    return out


def pick_periods(
    site: Site, now: datetime, month: str | None, quarter: str | None
) -> tuple[str, str, list[tuple[str, str]]]:
    """The month and quarter to show, and (what, value) for each asked one that could not be."""
    problems: list[tuple[str, str]] = []
    chosen_month, chosen_quarter = month_of(now, site), quarter_of(now, site)
    if month:
        try:
            start, _ = month_bounds(month, site.site.tz)
            if start > now:
                raise ValueError(month)
            chosen_month = month
        except ValueError:
            problems.append(("month", month[:20]))
    if quarter:
        try:
            start, _ = quarter_bounds(quarter, site)
            if start > now:
                raise ValueError(quarter)
            chosen_quarter = quarter
        except ValueError:
            problems.append(("quarter", quarter[:20]))
    return chosen_month, chosen_quarter, problems
