"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) under /open311/v2/, in JSON
and XML (the format every client supports).

Services are the category table; a request is a case. `agency_responsible` is the unit the
report was routed to; zonemap's states map to open/closed (closed and voided are closed).
POST takes the spec's form fields (service_code, lat, long, description, address_string,
email, phone, first_name, last_name, media_url, api_key); lat/long are WGS 84. Errors are the
spec's list of {code, description}. Nothing personal is served: no reporter, no contact, and
phone numbers or e-mail addresses typed into a description are masked."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pandas as pd
from flask import Blueprint, Response, jsonify, request

from layers import cases
from layers.errors import InputError, NotFound
from layers.privacy import redact
from layers.workflow import FINAL, LINKED, STATE_ZH

from .api import IDEMPOTENCY_HEADER, take_report
from .common import city_time, current_user, form_fields, json_body, services, settings

PREFIX = "/open311/v2"
DEFAULT_DAYS = 90
FORMATS = ("json", "xml")
# the POST's fields that are text (lat and long are numbers, or text holding one)
TEXT_FIELDS = ("service_code", "description", "address_string", "email", "phone", "first_name", "last_name",
               "media_url", "api_key")
# XML names: the list element and the element of each item, per answer kind
XML_NAMES = {"services": ("services", "service"), "requests": ("service_requests", "request"),
             "errors": ("errors", "error")}
# the spec's content types (its "Format Support"): UTF-8 everywhere, said in the header
CONTENT_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
# characters XML 1.0 cannot hold at all, not even escaped: a stored description may carry them
# (a control character typed or pasted on a phone) and one would make the whole list unreadable
XML_ILLEGAL = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

bp = Blueprint("open311", __name__, url_prefix=PREFIX)


def _fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not served; use .json or .xml")
    return fmt


def _xml_value(parent: ET.Element, key: str, value) -> None:
    el = ET.SubElement(parent, key)
    if isinstance(value, list):
        for item in value:
            _xml_value(el, key[:-1] if key.endswith("s") else "item", item)
    elif isinstance(value, dict):
        for k, v in value.items():
            _xml_value(el, k, v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is not None:  # None stays an empty element, as in the spec's <account_id/>
        el.text = XML_ILLEGAL.sub("\ufffd", str(value))


def render(items, fmt: str, kind: str, status: int = 200) -> Response:
    """A list of dicts (or one dict, for a service definition) as JSON or the spec's XML."""
    if fmt == "json":
        response = jsonify(items)
    else:
        if isinstance(items, dict):  # a service definition: one element, no list around it
            root = ET.Element(kind)
            for k, v in items.items():
                _xml_value(root, k, v)
        else:
            outer, inner = XML_NAMES[kind]
            root = ET.Element(outer)
            for item in items:
                el = ET.SubElement(root, inner)
                for k, v in item.items():
                    _xml_value(el, k, v)
        body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False)
        response = Response(body)
    response.content_type = CONTENT_TYPES[fmt]
    response.status_code = status
    return response


def error(status: int, message: str) -> Response:
    """The spec's error list, in the format the path asked for. The spec answers a wrong or
    missing api_key with 403 where the rest of zonemap says 401."""
    fmt = "xml" if request.path.endswith(".xml") else "json"
    status = 403 if status == 401 else status
    return render([{"code": status, "description": message}], fmt, "errors", status)


def _service(c) -> dict:
    return {"service_code": c.code, "service_name": c.name, "description":
            f"{c.name}: {c.limit:g} {c.limit_unit.replace('_', ' ')}, {c.department}",
            "metadata": False, "type": "realtime", "keywords": c.major, "group": c.major}


def _open_closed(status: str, case_status: str | None) -> str:
    s = case_status if status == LINKED and case_status else status
    return "closed" if s in FINAL else "open"


@bp.get("/services.<fmt>")
def services_list(fmt):
    return render([_service(c) for c in services().rules.categories.values()], _fmt(fmt), "services")


def _offered(code: str, fmt: str) -> str:
    """`code` when it is a service of this server; else the spec's 404 for an unknown service_code."""
    if code not in services().rules.categories:
        raise NotFound(f"service_code {code!r} is not offered; see {PREFIX}/services.{fmt}")
    return code


@bp.get("/services/<code>.<fmt>")
def service(code, fmt):
    fmt = _fmt(fmt)
    return render({"service_code": _offered(code, fmt), "attributes": []}, fmt, "service_definition")


def _as_request(r: dict, names: dict, cats: dict, parents: dict) -> dict:
    cat = cats.get(r["category"] or "")
    parent = parents.get(r.get("duplicate_of"))
    notes = STATE_ZH.get(r["status"], r["status"])
    if r["status"] == LINKED:
        notes += f" → {r['duplicate_of']}"
    updated = r.get("closed_at") or r.get("stage_started_at") or r.get("reported_at")
    unit = names.get(r.get("unit_id"), r.get("unit_id"))
    due = city_time(r.get("target_at") or r.get("stage_deadline"))
    return {
        "service_request_id": r["problem_id"],
        "status": _open_closed(r["status"], parent),
        "status_notes": notes,
        "service_name": cat.name if cat else r["category"],
        "service_code": r["category"],
        "description": redact(r.get("description")),
        "agency_responsible": unit,
        "service_notice": f"由 {unit} 负责" + (f", 处置时限 {city_time(r['target_at'])}" if r.get("target_at") else ""),
        "requested_datetime": city_time(r.get("reported_at")),
        "updated_datetime": city_time(updated),
        "expected_datetime": due,
        "address": redact(r.get("address")),
        "address_id": None,
        "zipcode": None,
        "lat": None if r.get("location_placeholder") else float(r["lat"]),
        "long": None if r.get("location_placeholder") else float(r["lon"]),
        "media_url": None,
    }


def _answer(rows: list[dict], fmt: str) -> Response:
    store = services().store
    units = store.read("units")
    names = dict(zip(units["unit_id"], units["name"]))
    parent_ids = sorted({r["duplicate_of"] for r in rows if r.get("duplicate_of")})
    parents = {}
    if parent_ids:
        got = store.read("problems", where={"problem_id": parent_ids})
        parents = dict(zip(got["problem_id"], got["status"]))
    cats = services().rules.categories
    return render([_as_request(r, names, cats, parents) for r in rows], fmt, "requests")


def _found(**query) -> list[dict]:
    """Requests as rows: every case (Open311 is the open-data view), duplicates included."""
    svc = services()
    return cases.case_rows(cases.find(svc.store, None, include_linked=True, rules=svc.rules, **query)[0])


@bp.get("/requests/<request_id>.<fmt>")
def one_request(request_id, fmt):
    fmt = _fmt(fmt)
    rows = _found(ids=[request_id], order=None)
    if not rows:
        raise NotFound(f"no service request {request_id!r}")
    return _answer(rows, fmt)


def _time(name, end: bool = False):
    """start_date/end_date; a bare date is the city's day, and an end_date takes that day whole."""
    return cases.parse_time(request.args.get(name), name, "a W3C datetime, e.g. 2026-11-01T00:00:00+08:00",
                            tz=services().rules.tz, end=end)


@bp.get("/requests.<fmt>")
def requests_list(fmt):
    """service_request_id (any of them), else service_code, start_date/end_date (the last
    DEFAULT_DAYS without either) and status, newest first, at most open311_max."""
    fmt = _fmt(fmt)
    a = request.args
    if a.get("service_request_id"):
        return _answer(_found(ids=a["service_request_id"], order=None), fmt)
    start, end = _time("start_date"), _time("end_date", end=True)
    status = {s.strip() for s in a.get("status", "").split(",") if s.strip()}
    if status - {"open", "closed"}:
        raise InputError("status is open, closed or open,closed")
    if start is None and end is None:
        start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=DEFAULT_DAYS)
    closed = None if len(status) != 1 else status == {"closed"}
    rows = _found(category=a.get("service_code"), since=start, until=end, closed=closed,
                  limit=settings().open311_max)
    return _answer(rows, fmt)


@bp.post("/requests.<fmt>")
def post_request(fmt):
    fmt = _fmt(fmt)
    f = json_body() if request.mimetype == "application/json" else form_fields()
    for k in TEXT_FIELDS:  # in a JSON body: a number, list, object or boolean is no text
        if f.get(k) is not None and not isinstance(f[k], str):
            raise InputError(f"field {k!r} must be text, not {type(f[k]).__name__}")
    if not f.get("service_code"):
        raise InputError(f"service_code is required; see services.{fmt}")
    _offered(str(f["service_code"]), fmt)  # the spec answers an unknown one with 404, naming service_code
    if f.get("lat") in (None, "") or f.get("long") in (None, ""):
        raise InputError("lat and long are required (WGS 84); this server does not geocode addresses")
    contact = ", ".join(str(f[k]) for k in ("first_name", "last_name", "email", "phone") if f.get(k)) or None
    data = {"lon": f.get("long"), "lat": f.get("lat"), "crs": "wgs84", "category": f.get("service_code"),
            "description": f.get("description"), "address": f.get("address_string"), "contact": contact}
    if f.get("media_url"):
        if len(str(f["media_url"])) > 1000:  # kept whole or refused, never cut
            raise InputError("media_url is longer than 1000 characters")
        data["attrs"] = json.dumps({"media_url": str(f["media_url"])}, ensure_ascii=False)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    answer = take_report(data, current_user(f.get("api_key")), "open311", key=key)
    notice = f"由 {answer['unit_name']} 负责"
    if answer.get("duplicate_of"):
        notice += f"; 与 {answer['duplicate_of']} 重复,已关联"
    return render([{"service_request_id": answer["problem_id"], "service_notice": notice, "account_id": None}],
                  fmt, "requests")
