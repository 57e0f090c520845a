"""The OpenAPI document: examples that fit their schemas, typed responses, paging headers documented."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from service.app import create_app
from service.config.settings import Settings
from service.config.site import load_site
from tests.conftest import DEMO_SITE

WITH_EXAMPLES = (
    "EnergyReport",
    "DepartmentEnergy",
    "EnergyTotals",
    "BandEnergy",
    "RoomEnergy",
    "ComplianceOut",
    "CommandOut",
    "OverrideOut",
    "Health",
    "ShelveIn",
    "RunIn",
    "SchedulePatch",
    "ScheduleOut",
    "ScheduleRun",
    "RunOut",
    "SchedulePatchOut",
)
TYPED = {
    ("get", "/api/schedules"): "ScheduleOut",
    ("get", "/api/schedules/{schedule_id}/history"): "ScheduleRun",
    ("post", "/api/schedules/{schedule_id}/run"): "RunOut",
    ("patch", "/api/schedules/{schedule_id}"): "SchedulePatchOut",
    ("get", "/api/compliance"): "ComplianceOut",
}
PAGED = ("/api/alarms", "/api/overrides", "/api/audit", "/api/schedules/{schedule_id}/history")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    app = create_app(load_site(DEMO_SITE), Settings(_env_file=None, env="test"), drivers=False)
    document: dict[str, Any] = app.openapi()
    return document


def test_every_example_fits_its_schema(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    misfits: dict[str, list[str]] = {}
    checked = 0
    for name, schema in schemas.items():
        validator = jsonschema_rs.validator_for({**schema, "components": doc["components"]})
        for example in schema.get("examples", []):
            checked += 1
            errors = [e.message for e in validator.iter_errors(example)]
            if errors:
                misfits[name] = errors
    assert misfits == {}
    assert [n for n in WITH_EXAMPLES if not schemas[n].get("examples")] == []
    assert checked >= len(WITH_EXAMPLES)


def test_schedule_and_compliance_responses_are_typed(doc: dict[str, Any]) -> None:
    found = {}
    for method, path in TYPED:
        schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        ref = schema.get("$ref") or schema.get("items", {}).get("$ref", "")
        found[(method, path)] = ref.rsplit("/", 1)[-1]
    assert found == TYPED
    live = doc["components"]["schemas"]["ComplianceLive"]
    assert {"sources_available", "generators_ready", "allowed_interruption_s", "last_transfer"} <= set(
        live["properties"]
    )
    assert "last_transfer" not in live.get("required", [])


def test_list_routes_document_paging(doc: dict[str, Any]) -> None:
    missing = []
    for path in PAGED:
        op = doc["paths"][path]["get"]
        params = {p["name"] for p in op.get("parameters", [])}
        headers = op["responses"]["200"].get("headers", {})
        if not {"limit", "offset"} <= params or "X-Total-Count" not in headers:
            missing.append(path)
    assert missing == []
