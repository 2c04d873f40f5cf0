"""The OpenAPI document at /api/openapi.json: it names every JSON route of the app and no
other, and the app keeps it. schemathesis sends generated requests (valid and invalid, a
bounded number, the same every run) to every operation of a real store of each kind with
zones, units and a case, mostly signed in where the document names a token. Every answer
must be no 5xx, a documented status with the documented content type and headers, and match
its schema; a request the document calls invalid must be refused."""

from __future__ import annotations

import itertools
import re

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from layers.store import open_store
from layers.users import add_user, issue_token
from tests.layers.test_cases import IN_F1, city
from webmap.app import create_app
from webmap.open311 import FORMATS

# no 5xx; status, content type, headers and body as documented; invalid requests refused
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
EXAMPLES = 25  # per operation and generation phase: bounded, and the same every run (deterministic)
# HTML pages and static assets: left out of the document (its description says so)
NOT_JSON = ("pages", "auth_pages", "planner_pages", "field_pages", "inspector_pages", "assets")
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def web(module_store_url, tmp_path_factory):
    """An app over a small city (two zones, two units) on each store, an admin's token and
    one case."""
    tmp, db = tmp_path_factory.mktemp("openapi"), module_store_url
    city(db).close()
    with open_store(db) as s:
        add_user(s, "boss", "admin", "correct horse 42")
        token = issue_token(s, "boss")
    # limits far above what the run sends, so a 429 cannot hide an answer
    app = create_app({"db": db, "photos": str(tmp / "photos"), "report_rate_limit": "100000/minute",
                      "auth_failure_limit": "100000/minute", "access_log": False, "TESTING": True})
    got = app.test_client().post("/api/problems", json={"lon": IN_F1[0], "lat": IN_F1[1], "category": "06010",
                                                        "description": "满溢的垃圾桶"})
    assert got.status_code == 201, got.json
    return app, token, got.json["problem_id"]


def document_routes(doc: dict) -> set[tuple[str, str]]:
    """(METHOD, path with every parameter written {}) of each operation in the document."""
    return {(m.upper(), re.sub(r"\{[^}]+\}", "{}", path))
            for path, item in doc["paths"].items() for m in item if m in METHODS}


def app_routes(app) -> set[tuple[str, str]]:
    """The same for the app's JSON routes; Open311's `.<fmt>` is one route per format."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in NOT_JSON and not rule.rule.startswith("/api/"):
            continue
        paths = [rule.rule.replace("<fmt>", f) for f in FORMATS] if "<fmt>" in rule.rule else [rule.rule]
        out |= {(m, re.sub(r"<(?:[^:>]+:)?[^>]+>", "{}", p)) for p in paths
                for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def test_the_document_names_every_json_route_and_only_those(web):
    app = web[0]
    doc = app.test_client().get("/api/openapi.json")
    assert doc.status_code == 200 and doc.mimetype == "application/json"
    documented, routes = document_routes(doc.json), app_routes(app)
    assert routes - documented == set(), "routes missing from webmap/openapi.json"
    assert documented - routes == set(), "paths in webmap/openapi.json that the app does not serve"
    assert doc.json["openapi"].startswith("3.")
    # what the running server fills in: its map layers and its settings' maxima
    names = doc.json["components"]["parameters"]["LayerName"]["schema"]["enum"]
    assert "zones" in names and "users" not in names and "tokens" not in names
    assert all(app.test_client().get(f"/api/layers/{n}.geojson").status_code == 200 for n in names)
    per_page = next(p for p in doc.json["paths"]["/api/cases"]["get"]["parameters"] if p.get("name") == "per_page")
    assert per_page["schema"]["maximum"] == app.extensions["zonemap"].settings.page_max


def test_every_operation_documents_its_refusals(web):
    """The run below raises the rate limits, so it never sees a 429: the document must say it
    anyway (everywhere but /health), 401 wherever it asks for a token, and 400 everywhere
    (every route refuses an address with a NUL)."""
    doc = web[0].test_client().get("/api/openapi.json").json
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert path == "/health" or "429" in codes, f"{method.upper()} {path}: no 429"
            assert not op.get("security") or "401" in codes, f"{method.upper()} {path}: no 401"
            assert "400" in codes, f"{method.upper()} {path}: no 400 (an address with a NUL)"


@pytest.fixture
def served_schema(web):
    """The document as the test's app serves it. Loaded when the test runs, not while tests
    are collected: building every operation's requests takes seconds, which each worker of a
    parallel run would otherwise pay whether or not it runs this file."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", web[0])
    # the same requests every run: derandomized, and no stored failures replayed from .hypothesis/
    schema.config.generation.update(max_examples=EXAMPLES, deterministic=True, database="none")
    return schema


schema = schemathesis.pytest.from_fixture("served_schema")


TURNS = itertools.count()


def signs_in(case) -> bool:
    """Whether this request goes with the admin's token instead of what schemathesis made:
    three in four requests to operations whose security is a bearer token. Where the token is
    required, only requests that carry schemathesis' made-up one; a request it left without
    one on purpose (a negative case) stays so. The others check the anonymous and 401 answers."""
    security = case.operation.definition.raw.get("security", [])
    if not any("bearerAuth" in s for s in security):
        return False
    optional = {} in security
    return (optional or "Authorization" in (case.headers or {})) and next(TURNS) % 4 != 0


@pytest.mark.slow  # schemathesis: every operation (a subtest each) against the running app, on both stores
@schema.parametrize()
def test_the_app_keeps_its_document(case, web):
    app, token, problem_id = web
    for name in ("problem_id", "service_request_id"):  # the case made above: more than 404s
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = problem_id
    # the document describes bodies, not their transfer encoding: ask for them plain
    headers = {"Accept-Encoding": "identity"}
    if signs_in(case):
        headers["Authorization"] = f"Bearer {token}"
    checks = CHECKS
    if (case.query or {}).get("service_request_id"):  # GeoReport v2: then every other filter is ignored
        checks = [c for c in CHECKS if c is not negative_data_rejection]
    case.call_and_validate(app=app, headers=headers, checks=checks)
