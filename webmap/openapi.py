"""GET /api/openapi.json: the OpenAPI 3 document of every JSON route (webmap/openapi.json).

The document is a file kept by hand beside this module and read once. The few values that
belong to the running server are filled in per app, so the document never lists a stale
one: the map layers (the path parameter's enum) and the settings' maxima of `limit` and
`per_page`. tests/webmap/test_openapi.py holds the document to the app's routes and runs
schemathesis against it."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

from flask import Blueprint, current_app, jsonify

from .api import map_layers
from .common import settings

DOCUMENT = Path(__file__).resolve().with_name("openapi.json")

bp = Blueprint("openapi", __name__)


@cache
def _file() -> dict:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def document() -> dict:
    """The document for the current app (made once per app, kept in its extensions)."""
    doc = current_app.extensions.get("openapi")
    if doc is None:
        doc = copy.deepcopy(_file())
        s = settings()
        doc["components"]["parameters"]["LayerName"]["schema"]["enum"] = map_layers()
        _query(doc, "/api/layers/{name}.geojson", "limit")["maximum"] = s.max_features
        _query(doc, "/api/cases", "per_page")["maximum"] = s.page_max
        _nul_refusals(doc)
        current_app.extensions["openapi"] = doc
    return doc


def _nul_refusals(doc: dict) -> None:
    """Every route refuses an address holding a NUL (webmap/app.py, before any view) with 400:
    said here for each operation whose own refusals have no 400, in its format's words."""
    for path, item in doc["paths"].items():
        fmt = "O311Xml" if path.endswith(".xml") else "O311" if path.startswith("/open311/") else ""
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                op["responses"].setdefault("400", {"$ref": f"#/components/responses/{fmt}BadRequest"})


def _query(doc: dict, path: str, name: str) -> dict:
    """The schema of query parameter `name` of GET `path`."""
    for p in doc["paths"][path]["get"]["parameters"]:
        if p.get("name") == name:
            return p["schema"]
    raise KeyError(f"webmap/openapi.json: GET {path} has no query parameter {name!r}")


@bp.get("/api/openapi.json")
def openapi():
    return jsonify(document())


__all__ = ["bp", "document"]
