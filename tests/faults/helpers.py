"""What the fault tests share: the figure line, small sites, the service as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config.site import Site, parse_site
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def figure(name: str, text: str) -> str:
    """Print a test's figure the way tests/faults/README.md quotes it; returns the line."""
    line = f"FIGURE {name}: {text}"
    print(line)
    return line


def make_site(text: str) -> Site:
    """A site from YAML text (validated like a site file)."""
    return parse_site(text, "test-site.yaml")


@dataclass
class ServiceProcess:
    """`python -m service serve` as a child process: start, SIGKILL, start again on the same data."""

    site_file: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    keys: dict[str, str] = field(default_factory=dict)
    # what runs `serve`: the product's entry point, or one that wraps it (tests/faults/fast_clock.py)
    launcher: list[str] = field(default_factory=lambda: ["-m", "service"])
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = {role: f"wk-test-{role}-{secrets.token_hex(12)}" for role in ("viewer", "operator", "admin")}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "service.log"

    def environment(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
        return {
            **base,
            "WATTKEEPER_DATABASE_URL": f"sqlite:///{self.workdir}/wattkeeper.db",
            "WATTKEEPER_DATA_DIR": str(self.workdir / "var"),
            "WATTKEEPER_HTTP_PORT": str(self.port),
            "WATTKEEPER_API_KEYS": ",".join(f"{k}:{role}" for role, k in self.keys.items()),
            "WATTKEEPER_ENV": "test",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }

    def start(self, wait_s: float = 40.0) -> None:
        """Start and wait until /healthz answers."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        out = self.log.open("ab")
        out.write(f"\n----- run {self.runs} -----\n".encode())
        out.flush()
        self.proc = subprocess.Popen(
            [sys.executable, *self.launcher, "serve", "--site", str(self.site_file)],
            cwd=self.workdir,
            env=self.environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"service did not answer /healthz:\n{self.log.read_text()[-3000:]}")

    def sigkill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait (what systemd does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def get(self, path: str, role: str = "admin", timeout: float = 10.0) -> Any:
        """GET a JSON route with a key of `role`."""
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.keys[role]}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Mapping[str, Any] | None = None, role: str = "operator") -> Any:
        """POST JSON with a key of `role`."""
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method="POST",
            headers={"Authorization": f"Bearer {self.keys[role]}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


@contextlib.contextmanager
def service_process(site_file: Path, workdir: Path, env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    """A ServiceProcess stopped (SIGTERM) when the block ends, whatever happened."""
    svc = ServiceProcess(site_file, workdir, dict(env or {}))
    try:
        yield svc
    finally:
        svc.stop()
