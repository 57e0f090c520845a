"""schemathesis over the OpenAPI document against the running service (admin key): no 5xx, and every
response matches what the document says about it (status, content type, headers, body), with
schema-violating input rejected. The document is built in-process (so pytest can list one test per
operation); the service serves the same one, to a key only (checked first).

Bounded: a few examples per operation. Left out, each for a reason:
- the event stream (it never ends; tests/api/test_events.py covers it) and the login form (HTML;
  failed logins feed the per-client rate limit every other call here shares);
- `ignored_auth`: its probes send invalid keys, which trip that same rate limit (429); auth is
  walked route by route in tests/api/test_auth_walk.py;
- `allow_header_conformance`: Starlette answers 405 from the first route matching the path, so
  `Allow` names that route's methods only (GET and POST on one path are two routes);
- `positive_data_acceptance`: schema-valid is not domain-valid here: a made-up alarm id is 404,
  start after end is 422.

Generated headers that frame the HTTP message itself (`Content-Length`, `Transfer-Encoding`, ...)
are dropped before the call: a malformed one is refused by the HTTP server (uvicorn's parser
answers `400 Invalid HTTP request received.` in text/plain) before any route of the API runs, so it
says nothing about the API's document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service.app import create_app
from service.config.settings import Settings
from service.config.site import Site, load_site
from tests import servers
from tests.api.conftest import service_thread
from tests.conftest import DEMO_SITE, site_for_test
from tests.harness import RunningService

MAX_EXAMPLES = 25
EXCLUDED = [
    schemathesis.checks.ignored_auth,
    schemathesis.checks.allow_header_conformance,
    schemathesis.checks.positive_data_acceptance,
    # Its negative cases may rest on a part the test replaces (the Authorization header carries a
    # valid key) or a value the HTTP client normalises, so a correct 200 reads as "accepted bad
    # data"; bad input is checked on purpose in test_api_live.py and tests/faults/test_input_validation.py.
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The demo site and service on a broker of their own, for the whole module."""
    broker = servers.start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    with servers.running(broker.server):
        site: Site = site_for_test(broker.url)
        with service_thread(site, Path(tmp_path_factory.mktemp("service"))) as svc:
            yield svc


def _document() -> dict[str, object]:
    # The running service serves the same document; building it here lets pytest list one test
    # per operation (schemathesis' lazy fixture loader does not work with pytest 9).
    app = create_app(load_site(DEMO_SITE), Settings(_env_file=None, env="test"), drivers=False)
    return app.openapi()


schema = schemathesis.openapi.from_dict(_document()).exclude(path="/api/events").exclude(path="/login", method="POST")


# Headers the HTTP server reads to frame or switch the connection, answered before the application.
FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "upgrade", "expect", "te", "trailer"}
)


def _without_framing_headers(case: schemathesis.Case[Any]) -> None:
    if case.headers:
        for name in [name for name in case.headers if name.lower() in FRAMING_HEADERS]:
            del case.headers[name]


def test_the_running_service_serves_this_document_to_a_key(fuzzed: RunningService) -> None:
    """What is fuzzed is what the service describes, and the description needs a key like the data."""
    with httpx.Client(base_url=fuzzed.url, timeout=30) as c:
        anonymous = c.get("/openapi.json")
        served = c.get("/openapi.json", headers={"Authorization": f"Bearer {fuzzed.keys['viewer']}"})
    assert anonymous.status_code == 401
    assert served.status_code == 200 and served.json() == _document()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case: schemathesis.Case[Any], fuzzed: RunningService) -> None:
    """No 5xx; status, content type, headers and body as documented."""
    _without_framing_headers(case)
    case.call_and_validate(
        base_url=fuzzed.url,
        headers={"Authorization": f"Bearer {fuzzed.keys['admin']}"},
        excluded_checks=EXCLUDED,
    )
