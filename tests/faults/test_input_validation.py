"""Hostile site files and API input are refused with a clear error, never a crash or a 500.

Site files go through `wattkeeper check` (exit 2 and one line per problem is the contract for an
invalid file) and `service.config.site.load_site`, which `serve`, `simulate` and `demo` use too. API
input goes to the running service over HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.config.site import MAX_SITE_FILE_BYTES, SiteError, load_site
from tests import servers
from tests.conftest import DEMO_SITE, site_for_test
from tests.faults.helpers import figure
from tests.harness import RunningService, running_service

VALID = DEMO_SITE.read_text(encoding="utf-8")


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nsite: *i\n"


def site_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error must say)."""
    marker = tmp_path / "PWNED"
    cases: dict[str, tuple[str | bytes, str]] = {
        "anchor bomb (billion laughs)": (billion_laughs(), "anchors and aliases are not allowed"),
        "anchor reusing a device": (
            VALID.replace(
                "devices:\n", "devices:\n  - &dev {id: x1, driver: mqtt, profile: z2m-plug, topic: t/x1}\n  - *dev\n", 1
            ),
            "anchors and aliases are not allowed",
        ),
        "python tag that would run a command": (
            f'site: !!python/object/apply:os.system ["touch {marker}"]\n',
            "could not determine a constructor",
        ),
        "unknown local tag": ("site: !include /etc/passwd\n", "could not determine a constructor"),
        "nesting 100,000 deep": ("site: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
        "larger than 2 MB": ("# " + "x" * (MAX_SITE_FILE_BYTES + 10) + "\n" + VALID, "larger than"),
        "not UTF-8": (b"site: {id: \xff\xfe}\n", "not UTF-8"),
        "profile path traversal": (
            VALID.replace("profile: sdm630,", "profile: ../../../../etc/passwd,", 1),
            "unknown profile '../../../../etc/passwd'",
        ),
        "device id with a path": (
            VALID.replace("id: r2119-plug,", "id: ../../r2119-plug,", 1),
            "String should match pattern",
        ),
        "id of 10,000 characters": (
            VALID.replace("id: hq\n", f"id: {'h' * 10_000}\n", 1),
            "String should match pattern",
        ),
        "unknown key": (VALID.replace("grade: first\n", "grade: first\n  grid_password: hunter2\n", 1), "unknown key"),
    }
    out: dict[str, tuple[Path, str]] = {}
    for i, (name, (body, expect)) in enumerate(cases.items()):
        path = tmp_path / f"case-{i}.yaml"
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body, encoding="utf-8")
        out[name] = (path, expect)
    out["a directory"] = (tmp_path, "not a file")
    out["/dev/zero"] = (Path("/dev/zero"), "not a file")
    return out


def test_hostile_site_files_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    results: dict[str, tuple[int, str, float]] = {}
    for name, (path, _) in site_files(tmp_path).items():
        began = time.monotonic()
        done = runner.invoke(cli, ["check", "--site", str(path)])
        results[name] = (done.exit_code, done.output, time.monotonic() - began)
    with pytest.raises(SiteError):
        load_site(tmp_path / "case-0.yaml")
    expected = {name: expect for name, (_, expect) in site_files(tmp_path).items()}
    unclear = {n: out[-300:] for n, (code, out, _) in results.items() if code != 2 or expected[n] not in out}
    slowest = max(results.items(), key=lambda kv: kv[1][2])
    figure(
        "site-file-validation",
        f"{len(results) - len(unclear)} of {len(results)} hostile site files refused by `wattkeeper check` with "
        f"exit 2 and the reason ({', '.join(results)}); no command ran; slowest refusal {slowest[1][2]:.2f} s "
        f"({slowest[0]})",
    )
    assert unclear == {}
    assert not (tmp_path / "PWNED").exists()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[RunningService]:
    site = site_for_test(f"mqtt://127.0.0.1:{servers.free_port()}")
    async with running_service(site, tmp_path, drivers=False) as svc:
        yield svc


async def test_hostile_api_input_is_refused_with_a_clear_error(api: RunningService) -> None:
    big = "x" * 5_000_000
    deep = b'{"room": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases: list[tuple[str, str, str, dict[str, Any]]] = [  # (name, method, path, httpx request arguments)
        ("static path traversal", "GET", "/static/%2e%2e/%2e%2e/%2e%2e/pyproject.toml", {}),
        ("static path traversal, encoded slash", "GET", "/static/..%2F..%2F..%2Fservice%2Fsettings.py", {}),
        ("static absolute path", "GET", "/static/%2Fetc%2Fpasswd", {}),
        (
            "device id traversal",
            "POST",
            "/api/devices/..%2F..%2Fetc%2Fpasswd/commands",
            {"json": {"command": "on", "value": False}},
        ),
        (
            "device id of 10,000 chars",
            "POST",
            f"/api/devices/{'d' * 10_000}/commands",
            {"json": {"command": "on", "value": False}},
        ),
        ("alarm id of 5,000 chars", "POST", f"/api/alarms/{'a' * 5_000}/ack", {}),
        (
            "5 MB override reason",
            "POST",
            "/api/overrides",
            {"json": {"room": "r2119", "until": "2099-01-01T00:00:00+08:00", "reason": big}},
        ),
        ("5 MB command name", "POST", "/api/devices/r2119-light/commands", {"json": {"command": big, "value": False}}),
        (
            "JSON nested 100,000 deep",
            "POST",
            "/api/overrides",
            {"content": deep, "headers": {"content-type": "application/json"}},
        ),
        (
            "body not UTF-8",
            "POST",
            "/api/overrides",
            {"content": b'{"room": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
        ),
        (
            "value of the wrong type",
            "POST",
            "/api/devices/r2119-light/commands",
            {"json": {"command": "on", "value": [1, {"a": 2}]}},
        ),
        (
            "NaN in JSON",
            "POST",
            "/api/devices/r2119-ac/commands",
            {"content": b'{"command": "setpoint", "value": NaN}', "headers": {"content-type": "application/json"}},
        ),
        ("month traversal", "GET", "/api/reports/energy", {"params": {"month": "../../etc/passwd"}}),
        ("page size 10^30", "GET", "/api/alarms", {"params": {"limit": str(10**30)}}),
        ("unknown alarm type", "GET", "/api/alarms", {"params": {"type": "'; DROP TABLE alarms; --"}}),
        ("naive shelve time", "POST", "/api/alarms/x/shelve", {"json": {"until": "2099-01-01T00:00:00"}}),
        (
            "override until in 1970",
            "POST",
            "/api/overrides",
            {"json": {"room": "r2119", "until": "1970-01-01T00:00:00+00:00"}},
        ),
        (
            "unknown field",
            "POST",
            "/api/overrides",
            {"json": {"room": "r2119", "until": "2099-01-01T00:00:00+08:00", "sudo": True}},
        ),
        ("1 MB bearer token", "GET", "/api/devices", {"headers": {"authorization": "Bearer " + "k" * 1_000_000}}),
    ]
    answers: dict[str, tuple[int, str]] = {}
    async with api.client("admin", timeout=60) as c:
        for name, method, path, kw in cases:
            headers = {**dict(c.headers), **kw.pop("headers", {})}
            try:
                r = await c.request(method, path, headers=headers, **kw)
                answers[name] = (r.status_code, r.text[:200])
            except httpx.HTTPError as exc:  # no answer at all: the caller learns nothing of what was wrong
                answers[name] = (0, f"no answer, connection dropped: {type(exc).__name__}")
        still_up = (await c.get("/healthz")).status_code
    server_errors = {n: a for n, a in answers.items() if not 400 <= a[0] < 500}
    vague = {n: a for n, a in answers.items() if 400 <= a[0] < 500 and '"detail"' not in a[1] and "<" not in a[1]}
    figure(
        "api-input-validation",
        f"{len(answers) - len(server_errors)} of {len(answers)} hostile requests refused with a 4xx and a reason "
        f"(statuses {sorted({a[0] for a in answers.values()})}): path traversal, 5 MB strings, 100,000-deep JSON, "
        f"non-UTF-8, NaN, wrong types, unknown fields, 10^30 page size, a 1 MB token; service still up: {still_up}",
    )
    assert server_errors == {}, f"not refused with a 4xx (0: the connection dropped): {server_errors}"
    assert vague == {}, vague
    assert still_up == 200


async def test_a_body_over_the_limit_is_refused_before_it_is_read(api: RunningService) -> None:
    """WATTKEEPER_MAX_BODY_BYTES (1 MiB): a larger body gets 413 with a reason, whether its
    Content-Length says so or it arrives chunked; a body within the limit is read as usual."""
    limit = api.services.settings.max_body_bytes
    reason = "r" * (limit + 1)
    body = {"room": "r2119", "until": "2099-01-01T00:00:00+08:00", "reason": reason}

    async def chunked() -> AsyncIterator[bytes]:
        payload = json.dumps(body).encode()
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    async with api.client("operator", timeout=60) as c:
        sized = await c.post("/api/overrides", json=body)
        streamed = await c.post(
            "/api/overrides", content=chunked(), headers={**c.headers, "content-type": "application/json"}
        )
        within = await c.post("/api/overrides", json={**body, "reason": "r" * 100, "room": "no-such-room"})
        assert (await c.get("/healthz")).status_code == 200
    figure(
        "api-body-limit",
        f"a body of {limit + 1:,}+ bytes (limit {limit:,}) refused before it is read: with Content-Length "
        f"{sized.status_code}, chunked {streamed.status_code}; a body within the limit read as usual "
        f"({within.status_code}, naming the unknown room)",
    )
    for r in (sized, streamed):
        assert r.status_code == 413, r.text[:200]
        assert f"larger than {limit} bytes" in r.json()["detail"]
    assert within.status_code in (400, 404, 422), within.text[:200]
    assert "no-such-room" in within.text
