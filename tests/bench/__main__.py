"""`make bench`: run every tests/bench/bench_*.py, print one table, save results.json.

Each module exposes `run() -> list[dict]` with rows {name, value, unit, baseline, ratio, target, met};
every figure is measured beside its baseline in the same run, so ratios hold on a noisy machine.

`make bench RECORD=1` (`python -m tests.bench --record`) also writes `results-<UTC date>.json`
beside this file, to be committed with the Performance table of docs/figures.md it backs: the figures, the
modules run and any that failed, the machine, the commit and the load average before and after
(the machine may be shared). `BENCH_NOTE="..."` adds a note to it.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = ("name", "value", "unit", "baseline", "ratio", "target", "met")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def _cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def _commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def record(
    rows: list[dict[str, object]],
    *,
    out_dir: Path,
    started: datetime,
    took_s: float,
    modules: list[str],
    failed: list[str],
    load_before: tuple[float, float, float],
    note: str | None = None,
) -> Path:
    """Write results-<date of `started`>.json into `out_dir`; return its path."""
    out = out_dir / f"results-{started:%Y-%m-%d}.json"
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "took_s": round(took_s, 1),
        "command": "make bench RECORD=1",
        "modules": modules,
        "failed": failed,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "arch": platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "commit": _commit(out_dir),
        "note": note,
        "figures": rows,
    }
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return out


def main(argv: list[str], *, here: Path = HERE, package: str = "tests.bench") -> int:
    """Run the benchmarks named in argv (all when none); `--record` also writes results-<date>.json."""
    recording = "--record" in argv
    only = {a for a in argv if a != "--record"}
    started_at, started = datetime.now(UTC), time.monotonic()
    load_before = os.getloadavg()
    rows: list[dict[str, object]] = []
    modules: list[str] = []
    failed: list[str] = []
    for path in sorted(here.glob("bench_*.py")):
        if only and path.stem not in only and path.stem.removeprefix("bench_") not in only:
            continue
        modules.append(path.stem)
        began = time.monotonic()
        print(f"== {path.stem}", flush=True)
        try:
            module = importlib.import_module(f"{package}.{path.stem}")
            got = module.run()
        except Exception:
            failed.append(path.stem)
            traceback.print_exc()
            continue
        for row in got:
            missing = [k for k in KEYS if k not in row]
            if missing:
                raise ValueError(f"{path.stem}: row {row.get('name')} lacks {missing}")
            rows.append({k: row[k] for k in KEYS})
        print(f"   {len(got)} figure(s) in {time.monotonic() - began:.1f} s", flush=True)
    widths = [max(len(k), *(len(_fmt(r[k])) for r in rows)) if rows else len(k) for k in KEYS]
    print()
    print("  ".join(k.ljust(w) for k, w in zip(KEYS, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(_fmt(r[k]).ljust(w) for k, w in zip(KEYS, widths, strict=True)))
    met = [str(r["name"]) for r in rows if r["met"] is True]
    missed = [str(r["name"]) for r in rows if r["met"] is False]
    print(f"\ntargets: {len(met)} met, {len(missed)} missed{': ' + ', '.join(missed) if missed else ''}")
    if failed:
        print(f"{len(failed)} benchmark module(s) failed: see the tracebacks above")
    out = here / "results.json"
    out.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{len(rows)} figures on {platform.machine()} ({platform.python_version()}); saved to {out.name}")
    if recording:
        kept = record(
            rows,
            out_dir=here,
            started=started_at,
            took_s=time.monotonic() - started,
            modules=modules,
            failed=failed,
            load_before=load_before,
            note=os.environ.get("BENCH_NOTE") or None,
        )
        print(f"recorded in {kept.name}: commit it with the Performance table in docs/figures.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
