"""`make bench RECORD=1`: the run's figures kept in tests/bench/results-<date>.json, with its machine and commit."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.bench.__main__ import KEYS, main
from tests.conftest import ROOT

ROW = {
    "name": "widgets_per_s",
    "value": 1234.5,
    "unit": "1/s",
    "baseline": 2000.0,
    "ratio": 0.62,
    "target": ">= 0.5x",
    "met": True,
}


def _bench_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A package with one benchmark that gives ROW and one that fails, importable by name."""
    name = f"fakebench_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bench_good.py").write_text(f"def run():\n    return [{ROW!r}]\n")
    (pkg / "bench_broken.py").write_text("def run():\n    raise RuntimeError('no server')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, pkg


def test_record_writes_the_dated_results_beside_the_benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name, pkg = _bench_package(tmp_path, monkeypatch)
    monkeypatch.setenv("BENCH_NOTE", "ran while other work loaded the machine")
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert main(["--record"], here=pkg, package=name) == 1  # a benchmark failed: the run says so
    recorded = json.loads((pkg / f"results-{day}.json").read_text())
    assert recorded["figures"] == [ROW] and list(recorded["figures"][0]) == list(KEYS)
    assert (recorded["modules"], recorded["failed"]) == (["bench_broken", "bench_good"], ["bench_broken"])
    assert recorded["started"].startswith(day) and recorded["took_s"] >= 0
    assert recorded["note"] == "ran while other work loaded the machine"
    machine = recorded["machine"]
    assert machine["nproc"] >= 1 and machine["python"].endswith(sys.version.split()[0])
    assert len(machine["load_average_before"]) == 3 and len(machine["load_average_after"]) == 3
    assert json.loads((pkg / "results.json").read_text()) == [ROW]  # the plain run's file as before


def test_without_record_only_results_json_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name, pkg = _bench_package(tmp_path, monkeypatch)
    assert main(["good"], here=pkg, package=name) == 0  # one module picked by its short name
    assert json.loads((pkg / "results.json").read_text()) == [ROW]
    assert list(pkg.glob("results-*.json")) == []


def test_make_bench_record_passes_the_flag() -> None:
    def recipe(*args: str) -> str:
        out = subprocess.run(
            ["make", "-n", "-C", str(ROOT), "bench", *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        return next(line for line in out.stdout.splitlines() if "-m tests.bench" in line)

    assert recipe("RECORD=1", "BENCH_ARGS=sweep").endswith("-m tests.bench --record sweep")
    assert "--record" not in recipe()
