"""`wattkeeper schema`: the site file's JSON Schema, the committed copy editors use, its agreement with the loader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from service.config.schema import REGENERATE, SCHEMA_FILE, render, site_schema
from service.config.site import SiteError, _SiteLoader, parse_site

ROOT = Path(__file__).resolve().parent.parent.parent
SITES = sorted((ROOT / "deploy" / "sites").glob("*.yaml"))
HEADER = "# yaml-language-server: $schema="


def site_data(text: str) -> Any:
    """The file as the site loader reads it (dates stay text, as the loader keeps them)."""
    return yaml.load(text, Loader=_SiteLoader)  # a SafeLoader: the site loader


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.Draft202012Validator(site_schema())


def test_the_committed_schema_is_what_wattkeeper_schema_prints() -> None:
    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == render(), f"{SCHEMA_FILE} is out of date with the site models: run `{REGENERATE}`"


def test_wattkeeper_schema_prints_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service", "schema"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out) == site_schema()


@pytest.mark.parametrize("path", SITES, ids=lambda p: p.name)
def test_shipped_site_files_name_the_committed_schema_and_pass_it(path: Path, validator: Any) -> None:
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith(HEADER), f"{path.name}: first line must be `{HEADER}<path to {SCHEMA_FILE}>`"
    assert (path.parent / first[len(HEADER) :]).resolve() == (ROOT / SCHEMA_FILE).resolve()
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(site_data(text))]
    assert errors == []


def _walk(schema: dict[str, Any], where: str, out: list[str]) -> None:
    for key, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            out.append(f"{where}.{key}: no description")
        if not prop.get("examples"):
            out.append(f"{where}.{key}: no example")


def test_every_key_has_a_description_and_an_example() -> None:
    schema = site_schema()
    missing: list[str] = []
    _walk(schema, "Site", missing)
    for name, sub in schema["$defs"].items():
        _walk(sub, name, missing)
        if "enum" in sub:
            assert sub.get("description"), name
    assert missing == [], "describe these keys with Field(description=...) or in service/config/schema.py KEY_DOCS"


def test_enums_list_roles_kinds_grades_and_profiles() -> None:
    defs = site_schema()["$defs"]
    assert defs["DeviceRole"]["enum"] == [  # DESIGN §4, and `supply` (a supply-side device, issue 24)
        "lighting",
        "hvac",
        "office_equipment",
        "sensor",
        "critical",
        "life_safety",
        "supply",
    ]
    assert defs["RoomKind"]["enum"] == ["office", "meeting", "corridor", "locker", "reception", "server", "other"]
    assert defs["Grade"]["enum"] == ["special", "first", "second", "temporary", "ordinary"]
    assert {"sdm630", "dse-gencomm", "atys-pm", "z2m-occupancy", "tasmota-relay", "shelly-plug"} <= set(
        defs["Device"]["properties"]["profile"]["enum"]
    )


BASE = """\
site: {id: t, name: T, grade: second, allowed_interruption_s: 10}
sources:
  - {id: grid-a, substation: s1, voltage_kv: 10}
departments:
  - {id: d, name: D}
rooms:
  - {id: r1, name: R1, department: d, kind: office, devices: [r1-occ]}
devices:
  - {id: r1-occ, driver: mqtt, profile: z2m-occupancy, topic: zigbee2mqtt/r1-occ, role: sensor}
  - {id: m1, driver: modbus, profile: sdm630, host: 127.0.0.1, port: 502, unit: 1}
"""

BROKEN = {
    "unknown top-level key": ("site:", "sitee: {}\nsite:"),
    "unknown grade": ("grade: second", "grade: third"),
    "unknown profile": ("profile: sdm630", "profile: sdm999"),
    "unknown role": ("role: sensor", "role: decoration"),
    "unknown room kind": ("kind: office", "kind: kitchen"),
    "missing allowed_interruption_s": (", allowed_interruption_s: 10", ""),
    "port out of range": ("port: 502", "port: 70000"),
    "text for a number": ("voltage_kv: 10", "voltage_kv: ten"),
    "misspelt device key": ("unit: 1}", "unit: 1, pol_s: 2}"),
    "unit id above 247": ("unit: 1}", "unit: 300}"),
}


def test_the_base_sample_passes_both(validator: Any) -> None:
    parse_site(BASE)
    assert validator.is_valid(site_data(BASE))


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_schema_rejects_what_the_loader_rejects(case: str, validator: Any) -> None:
    old, new = BROKEN[case]
    assert old in BASE
    text = BASE.replace(old, new, 1)
    with pytest.raises(SiteError):
        parse_site(text)
    assert not validator.is_valid(site_data(text)), case
