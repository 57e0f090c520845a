"""`make bench`: run every tests/bench/bench_*.py, print one table, save results.json.

Each module exposes `run() -> list[dict]` with rows {name, value, unit, baseline, ratio, target, met};
every figure is measured beside its baseline in the same run, so ratios hold on a noisy machine.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = ("name", "value", "unit", "baseline", "ratio", "target", "met")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def main(argv: list[str]) -> int:
    only = set(argv)
    rows: list[dict[str, object]] = []
    failures = 0
    for path in sorted(HERE.glob("bench_*.py")):
        if only and path.stem not in only and path.stem.removeprefix("bench_") not in only:
            continue
        started = time.monotonic()
        print(f"== {path.stem}", flush=True)
        try:
            module = importlib.import_module(f"tests.bench.{path.stem}")
            got = module.run()
        except Exception:
            failures += 1
            traceback.print_exc()
            continue
        for row in got:
            missing = [k for k in KEYS if k not in row]
            if missing:
                raise ValueError(f"{path.stem}: row {row.get('name')} lacks {missing}")
            rows.append({k: row[k] for k in KEYS})
        print(f"   {len(got)} figure(s) in {time.monotonic() - started:.1f} s", flush=True)
    widths = [max(len(k), *(len(_fmt(r[k])) for r in rows)) if rows else len(k) for k in KEYS]
    print()
    print("  ".join(k.ljust(w) for k, w in zip(KEYS, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(_fmt(r[k]).ljust(w) for k, w in zip(KEYS, widths, strict=True)))
    met = [str(r["name"]) for r in rows if r["met"] is True]
    missed = [str(r["name"]) for r in rows if r["met"] is False]
    print(f"\ntargets: {len(met)} met, {len(missed)} missed{': ' + ', '.join(missed) if missed else ''}")
    if failures:
        print(f"{failures} benchmark module(s) failed: see the tracebacks above")
    out = HERE / "results.json"
    out.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{len(rows)} figures on {platform.machine()} ({platform.python_version()}); saved to {out.name}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
