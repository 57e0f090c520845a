"""`wattkeeper report energy`, `report violations` and `report quarter` on a state store: table, the people's
CSV (BOM) and machine CSV, an xlsx file, and bad input."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.config.site import load_site
from service.store.db import Store
from tests.conftest import DEMO_SITE
from tests.service.test_quarterly import seed, supply_and_hazards
from tests.service.test_violations import simulate_march

SITE = ["--site", str(DEMO_SITE)]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/wk.db"

    async def prepare() -> None:
        s = Store(url)
        await s.open()
        await seed(s)
        await simulate_march(load_site(DEMO_SITE), s)
        await supply_and_hazards(s)
        await s.close()

    asyncio.run(prepare())
    monkeypatch.setenv("WATTKEEPER_DATABASE_URL", url)
    return url


def test_report_violations(database: str, tmp_path: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["report", "violations", "--month", "2026-03", *SITE])
    assert table.exit_code == 0, table.output
    assert "市场营销部" in table.output and "5 violations" in table.output
    people = runner.invoke(app, ["report", "violations", "--month", "2026-03", "--csv", *SITE])
    assert people.exit_code == 0 and people.stdout_bytes.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(people.stdout_bytes.decode("utf-8-sig"))))
    assert rows[0] == ["各部门违规与罚款"] and rows[1][0] == "部门"
    machine = runner.invoke(app, ["report", "violations", "--month", "2026-03", "--csv", "--lang", "en", *SITE])
    assert machine.output.splitlines()[0].startswith("id,type,department,room,at")
    target = tmp_path / "v.xlsx"
    written = runner.invoke(app, ["report", "violations", "--month", "2026-03", "--xlsx", "-o", str(target), *SITE])
    assert written.exit_code == 0 and str(target) in written.output
    assert openpyxl.load_workbook(target).sheetnames == ["各部门违规与罚款", "违规明细"]
    for args, text in (
        (["--month", "2026-13"], "YYYY-MM"),
        (["--month", "2099-01"], "not begun"),
        (["--month", "2026-03", "--csv", "--xlsx"], "choose one"),
        (["--month", "2026-03", "--csv", "--lang", "fr"], "--lang"),
    ):
        bad = runner.invoke(app, ["report", "violations", *args, *SITE])
        assert bad.exit_code == 2 and text in bad.output, (args, bad.output)


def test_report_quarter(database: str, tmp_path: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["report", "quarter", "--quarter", "2026-Q1", *SITE])
    assert table.exit_code == 0, table.output
    assert "quarterly summary 2026-Q1" in table.output and "transfers 2 (1 over 10 s)" in table.output
    machine = runner.invoke(app, ["report", "quarter", "--quarter", "2026-Q1", "--csv", "--lang", "en", *SITE])
    rows = list(csv.reader(io.StringIO(machine.output)))
    assert rows[0][:3] == ["quarter", "department", "kwh"] and rows[1][:3] == ["2026-Q1", "admin", "60.0"]
    target = tmp_path / "q.xlsx"
    written = runner.invoke(app, ["report", "quarter", "--quarter", "2026-Q1", "--xlsx", "-o", str(target), *SITE])
    assert written.exit_code == 0, written.output
    assert len(openpyxl.load_workbook(target).sheetnames) == 4
    bad = runner.invoke(app, ["report", "quarter", "--quarter", "2026-Q5", *SITE])
    assert bad.exit_code == 2 and "YYYY-Qn" in bad.output


def test_report_energy(database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["report", "energy", "--month", "2026-03", *SITE])
    assert table.exit_code == 0, table.output
    assert "energy 2026-03 by department" in table.output and "site meters" in table.output
    machine = runner.invoke(app, ["report", "energy", "--month", "2026-03", "--csv", *SITE])
    rows = list(csv.reader(io.StringIO(machine.output)))
    assert machine.exit_code == 0 and rows[0][:3] == ["department", "name", "kwh"], rows[0]
    bad = runner.invoke(app, ["report", "energy", "--month", "2026-13", *SITE])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
    monkeypatch.setenv("WATTKEEPER_DATABASE_URL", f"sqlite:///{tmp_path}/none/wk.db")
    missing = runner.invoke(app, ["report", "energy", "--month", "2026-03", *SITE])
    assert missing.exit_code == 1 and "no state store" in missing.output
