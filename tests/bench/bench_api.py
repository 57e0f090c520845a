"""GET /api/state and GET /api/rooms requests/s: wattkeeper vs a bare Starlette route serving the same JSON.

The demo site's state comes from its simulators: a snapshot of every reading the drivers got in a
few seconds, which the service (drivers off) takes again every second, as polls would bring it.
Each server runs alone in its own process on the measured core, under uvicorn as `wattkeeper
serve` runs it; the bare app serves, per path, the very JSON wattkeeper answered. The load runs on
the load core: CONNECTIONS keep-alive connections of a minimal asyncio HTTP client (httpx saturates
first, see _api_load.py), REQUESTS GETs after a warm-up. Best of ROUNDS interleaved rounds per
server and path.

    python -m tests.bench api
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx  # only to fetch the payloads once

from tests import servers
from tests.bench._common import Figure, pinned_to_load, result_of, spawn, start_broker

PATHS = ("/api/state", "/api/rooms")
REQUESTS = 3000
CONNECTIONS = 8
ROUNDS = 3
TARGET = 0.5


def start(mode: str, cfg: dict[str, Any], work: Path) -> tuple[subprocess.Popen[str], str]:
    """A server process on the measured core, answering."""
    path = work / f"{mode}.json"
    path.write_text(json.dumps(cfg))
    proc = spawn("_api_worker", mode, str(path), measured=True)
    url = f"http://127.0.0.1:{cfg['port']}"
    servers.wait_http(f"{url}/healthz" if mode == "service" else f"{url}{PATHS[0]}")
    return proc, url


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def load(url: str, path: str, key: str) -> dict[str, Any]:
    args = (url, path, str(REQUESTS), str(CONNECTIONS), key)
    got = result_of(spawn("_api_load", *args, measured=False), timeout_s=600)
    got["per_s"] = got["requests"] / got["seconds"]
    return got


def run() -> list[dict[str, Any]]:
    """Rows: requests/s of /api/state and /api/rooms vs bare Starlette (target >= 0.5x)."""
    key = f"bench-{secrets.token_hex(16)}"
    results: dict[tuple[str, str], list[dict[str, Any]]] = {(k, p): [] for k in ("service", "bare") for p in PATHS}
    with tempfile.TemporaryDirectory() as tmp, pinned_to_load():
        work = Path(tmp)
        broker = start_broker(work / "mosquitto")
        try:
            snap = work / "snapshot.json"
            points = result_of(spawn("_api_worker", "snapshot", broker.url, str(snap), measured=False), 120)
            payloads = work / "payloads.json"
            for n in range(ROUNDS):
                for mode in ("service", "bare"):
                    cfg: dict[str, Any] = {
                        "port": servers.free_port(),
                        "mqtt_url": broker.url,
                        "workdir": str(work / f"{mode}-{n}"),
                        "snapshot": str(snap),
                        "payloads": str(payloads),
                        "key": key,
                    }
                    Path(cfg["workdir"]).mkdir()
                    proc, url = start(mode, cfg, work)
                    try:
                        if not payloads.exists():
                            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
                                body = {p: c.get(p).raise_for_status().json() for p in PATHS}
                            payloads.write_text(json.dumps(body))
                        for path in PATHS:
                            got = load(url, path, key)
                            results[(mode, path)].append(got)
                            busy = got["cpu_s"] / got["seconds"]
                            print(
                                f"   round {n + 1} {mode} {path}: {got['per_s']:,.0f} req/s "
                                f"(load generator {busy:.0%} busy)",
                                flush=True,
                            )
                    finally:
                        stop(proc)
            sizes = json.loads(payloads.read_text())
        finally:
            broker.server.stop()
    print(
        f"   {points['points']} points from the simulators; "
        + ", ".join(f"{p} {len(json.dumps(sizes[p])):,} bytes" for p in PATHS),
        flush=True,
    )
    rows = []
    for path in PATHS:
        best = {k: max(r["per_s"] for r in results[(k, path)]) for k in ("service", "bare")}
        name = f"api_{path.rsplit('/', 1)[1]}_req_per_s"
        rows.append(Figure(name, best["service"], "req/s", best["bare"], TARGET, digits=0).row())
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
