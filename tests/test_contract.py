"""The published contract: the OpenAPI document is valid, complete, and what the service does."""

from __future__ import annotations

import os

import mongomock
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import positive_data_acceptance

from dungeon import create_app

NO_LIMITS = {"IMAGE_PROVIDERS": "placeholder", "NARRATOR": "local", "RATE_LIMIT_GUESTS": "",
             "RATE_LIMIT_GAMES": "", "RATE_LIMIT_ACTIONS": "", "RATE_LIMIT_IMAGES": ""}
# Routes that serve the document, its reference page and the web client's files.
NOT_IN_THE_CONTRACT = {"/", "/api/", "/api/openapi.json", "/api/docs", "/api/redoc",
                       "/api/redoc/<path:filename>", "/api/static/<path:filename>",
                       "/assets/<path:filename>"}


@pytest.fixture
def contract_app(make_app):
    return make_app(NO_LIMITS)


@pytest.fixture
def document(contract_app):
    return contract_app.test_client().get("/api/openapi.json").get_json()


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_in_the_document(contract_app, document):
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item}
    for rule in contract_app.url_map.iter_rules():
        if rule.rule in NOT_IN_THE_CONTRACT:
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {rule.rule} is not documented"


def test_the_document_names_the_bearer_scheme_and_the_error_shape(document):
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["properties"]) == {"error", "request_id"}
    create = document["paths"]["/api/games"]["post"]
    assert create["security"] == [{"bearer": []}]
    for status in ("401", "422", "503"):
        schema = create["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_the_reference_page_is_served(contract_app):
    page = contract_app.test_client().get("/api/docs")
    assert page.status_code == 200 and b"openapi.json" in page.data


def _contract_app():
    """The app the generated requests run against, built apart from the developer's settings.

    schemathesis needs the schema when the module is collected, before any
    fixture runs (its fixture-based loading does not work with pytest 9.2).
    """
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("DUNGEON_",
                                                                              "OPENAI_"))}
    try:
        return create_app({"LOAD_ENTRYPOINTS": False, "TESTING": True,
                           "SECRET_KEY": "contract-signing-key-of-at-least-32-chars",
                           **NO_LIMITS}, mongo_client=mongomock.MongoClient(tz_aware=True))
    finally:
        os.environ.update(saved)


APP = _contract_app()
api = schemathesis.openapi.from_wsgi("/api/openapi.json", APP)


@api.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case):
    """Generated requests, valid and not: no 5xx, and every answer as documented."""
    token = APP.test_client().post("/api/auth/guest").get_json()["token"]
    excluded = []
    if case.operation.path == "/api/games" and (case.query or {}).get("cursor"):
        # A cursor is opaque: only one the service made names a position, and
        # the schema cannot tell which strings those are.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=excluded)
