"""The Geo API's OpenAPI document: served by `primary serve`, committed as
docs/openapi.json, and the running server checked against it with schemathesis (every
generated request, valid or not, gets a documented non-5xx answer)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from geo_sync.db import write_transaction
from geo_sync.primary.api import create_app
from geo_sync.primary.openapi import openapi_document
from geo_sync.primary.publish import Change, publish
from tests.sites import PrimarySite

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_document_is_the_served_one(primary: PrimarySite) -> None:
    served = httpx.get(f"{primary.api}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == json.loads(DOCUMENT.read_text()) == openapi_document(), (
        "docs/openapi.json is stale: regenerate it with python -c 'import json; from "
        "geo_sync.primary.openapi import openapi_document as d; "
        "print(json.dumps(d(), indent=2))' > docs/openapi.json")


def test_every_route_of_the_server_is_documented_or_git(primary: PrimarySite) -> None:
    app = create_app(primary.settings, primary.engine)
    documented = {"/api/geo/v1" + path for path in openapi_document()["paths"]}
    for route in app.routes:
        path = route.path.replace("{path:path}", "{path}")  # type: ignore[attr-defined]
        assert path in documented or "/git/" in path, f"{path} is not in the document"


def _seed(primary: PrimarySite) -> None:
    with write_transaction(primary.engine) as conn:
        for path in ("a.bin", "dir/b.bin"):
            (primary.storage("artifacts") / path).parent.mkdir(parents=True, exist_ok=True)
            (primary.storage("artifacts") / path).write_bytes(b"x" * 10)
            publish(conn, Change("artifact", "created", path))


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def test_the_running_server_answers_every_generated_request_as_documented(
        primary: PrimarySite) -> None:
    # schemathesis' own pytest plugin (from_fixture) breaks on pytest 9, so each
    # operation's hypothesis strategy is driven here directly.
    _seed(primary)
    schema = schemathesis.openapi.from_url(f"{primary.api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label.split(" ", 1)[1] for operation in operations}
    # schemathesis leaves out the document's own URL, which the first test checks.
    assert labels == set(openapi_document()["paths"]) - {"/openapi.json"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=primary.api, headers=primary.headers(),
                                   timeout=90, checks=CHECKS)

        answers_as_documented()
