"""Reports as files people open: CSV for Excel/WPS (UTF-8 BOM, Chinese headers) and xlsx (openpyxl).

A report is rendered as a list of `Sheet`s (one table each: named columns of a kind — text, kWh,
money, count, percent, time). The CSV for people writes every table one after another, each under
its title row and separated by a blank line; the xlsx holds one worksheet per table with number
formats for kWh and 元 and the header row frozen. Machine CSV (`lang=en`) is each report's own.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Final, Literal

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from service.config.site import Site

Lang = Literal["zh", "en"]
Kind = Literal["text", "kwh", "money", "count", "pct", "time"]
BOM: Final = "\ufeff"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Number formats: kWh to 0.001, money to the fen with the currency sign, counts whole, percent 0.1.
FORMATS: Final[dict[Kind, str]] = {
    "kwh": "#,##0.000",
    "money": '#,##0.00" 元"',
    "count": "0",
    "pct": "0.0",
    "time": "yyyy-mm-dd hh:mm",
}
_CJK: Final = re.compile(r"[\u3400-\u9fff]")
_CHINA_ZONES: Final = frozenset(
    {"Asia/Shanghai", "Asia/Chongqing", "Asia/Chungking", "Asia/Harbin", "Asia/Urumqi", "Asia/Hong_Kong",
     "Asia/Macau", "Asia/Taipei", "PRC"}
)  # fmt: skip
_BAD_SHEET_CHARS: Final = re.compile(r"[\[\]:*?/\\]")

# Tariff bands as a Chinese sheet names them.
BAND_NAMES_ZH: Final = {"peak": "峰", "flat": "平", "valley": "谷", "sharp": "尖峰"}
# Violation and alarm type names for people, beside the dashboard's labels (service.web.i18n).
TYPE_NAMES: Final[dict[str, tuple[str, str]]] = {
    "lit_empty_room": ("长明灯", "lights on in an empty room"),
    "ac_too_cold": ("空调温度过低", "AC cooling too cold"),
    "ac_heating_too_warm": ("空调制热过高", "AC heating too warm"),
    "ac_door_open": ("开门窗开空调", "AC on with door open"),
    "high_power_appliance": ("违规大功率电器", "high-power appliance"),
    "ac_left_on": ("人走未关空调", "AC left on in an empty room"),
    "lit_in_daylight": ("日光充足时开灯", "lights on in daylight"),
    "left_on_after_hours": ("下班未关电器", "left on after hours"),
}
FINE_STATUS_NAMES: Final[dict[str, tuple[str, str]]] = {
    "none": ("未定价", "no price"),
    "proposed": ("待确认", "proposed"),
    "confirmed": ("已确认", "confirmed"),
    "waived": ("已免除", "waived"),
}


def name_of(names: dict[str, tuple[str, str]], key: str, lang: Lang) -> str:
    """The zh or en name of a key, or the key itself."""
    pair = names.get(key)
    return key if pair is None else pair[0 if lang == "zh" else 1]


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header in both languages and the kind of its values."""

    zh: str
    en: str
    kind: Kind = "text"

    def header(self, lang: Lang) -> str:
        """The header in `lang`."""
        return self.zh if lang == "zh" else self.en


@dataclass(slots=True)
class Sheet:
    """One table of a report."""

    name_zh: str
    name_en: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)

    def name(self, lang: Lang) -> str:
        """The table's title in `lang`."""
        return self.name_zh if lang == "zh" else self.name_en


def default_lang(site: Site) -> Lang:
    """Chinese for a site in a Chinese time zone or named in Chinese, else English."""
    names = [site.site.name, *(d.name for d in site.departments), *(r.name for r in site.rooms)]
    chinese = site.site.timezone in _CHINA_ZONES or any(_CJK.search(n) for n in names)
    return "zh" if chinese else "en"


def _local(value: datetime, tz: tzinfo) -> datetime:
    return value.astimezone(tz)


def _text_cell(value: Any, kind: Kind, tz: tzinfo) -> str:
    if value is None:
        return ""
    if kind == "time" and isinstance(value, datetime):
        return _local(value, tz).strftime("%Y-%m-%d %H:%M")
    if kind == "money" and isinstance(value, int | float):
        return f"{value:.2f}"
    if kind == "kwh" and isinstance(value, int | float):
        return f"{value:.3f}"
    return str(value)


def people_csv(sheets: Sequence[Sheet], lang: Lang, tz: tzinfo) -> bytes:
    """Every table under its title, a blank line between; UTF-8 with a BOM so Excel and WPS read Chinese."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    for n, sheet in enumerate(sheets):
        if n:
            w.writerow([])
        w.writerow([sheet.name(lang)])
        w.writerow([c.header(lang) for c in sheet.columns])
        for row in sheet.rows:
            w.writerow([_text_cell(v, c.kind, tz) for v, c in zip(row, sheet.columns, strict=True)])
    return (BOM + buf.getvalue()).encode("utf-8")


def _sheet_title(name: str, taken: set[str]) -> str:
    title = _BAD_SHEET_CHARS.sub(" ", name)[:31] or "sheet"
    base, n = title, 2
    while title in taken:
        suffix = f" ({n})"
        title = base[: 31 - len(suffix)] + suffix
        n += 1
    taken.add(title)
    return title


def xlsx(sheets: Sequence[Sheet], lang: Lang, tz: tzinfo) -> bytes:
    """One worksheet per table: bold frozen header row, number formats for kWh, money, counts and times."""
    wb = Workbook()
    wb.remove(wb.active)
    taken: set[str] = set()
    for sheet in sheets:
        ws = wb.create_sheet(_sheet_title(sheet.name(lang), taken))
        ws.append([c.header(lang) for c in sheet.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
            cell.alignment = Alignment(vertical="center", wrap_text=True)
        for row in sheet.rows:
            values: list[Any] = []
            for v, c in zip(row, sheet.columns, strict=True):
                if c.kind == "time" and isinstance(v, datetime):
                    values.append(_local(v, tz).replace(tzinfo=None))  # Excel has no time zones: site time
                else:
                    values.append(v)
            ws.append(values)
        for i, c in enumerate(sheet.columns, start=1):
            letter = get_column_letter(i)
            fmt = FORMATS.get(c.kind)
            if fmt is not None:
                for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                    cell.number_format = fmt
            longest = max([len(c.header(lang)) * 2, *(len(_text_cell(r[i - 1], c.kind, tz)) for r in sheet.rows)])
            ws.column_dimensions[letter].width = min(60, max(8, longest + 2))
        ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
