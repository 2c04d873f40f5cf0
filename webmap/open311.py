"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) under /open311/v2/.

Services are the category table; a request is a case. `agency_responsible` is the unit the
report was routed to; zonemap's states map to open/closed (closed and voided are closed).
Only the JSON format is served. POST takes the spec's form fields (service_code, lat, long,
description, address_string, email, phone, first_name, last_name, media_url, api_key);
lat/long are WGS 84. Errors are the spec's list of {code, description}."""

from __future__ import annotations

import pandas as pd
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from layers import cases
from layers.errors import ZonemapError
from layers.workflow import FINAL, LINKED, STATE_ZH

from .api import w3c

PREFIX = "/open311/v2"
DEFAULT_DAYS = 90
MAX_RESULTS = 1000


def _error(code: int, description: str):
    return jsonify([{"code": code, "description": description}]), code


def _service(c) -> dict:
    return {"service_code": c.code, "service_name": c.name, "description":
            f"{c.name}: {c.limit:g} {c.limit_unit.replace('_', ' ')}, {c.department}",
            "metadata": False, "type": "realtime", "keywords": c.major, "group": c.major}


def _open_closed(status: str, case_status: str | None) -> str:
    s = case_status if status == LINKED and case_status else status
    return "closed" if s in FINAL else "open"


def register(app: Flask, store) -> None:
    def categories():
        return app.extensions["rules"].categories  # loaded once per server, like the workflow

    def json_only(fmt: str):
        if fmt != "json":
            return _error(400, f"format {fmt!r} is not served; use .json")
        return None

    @app.get(f"{PREFIX}/services.<fmt>")
    def o311_services(fmt):
        return json_only(fmt) or jsonify([_service(c) for c in categories().values()])

    @app.get(f"{PREFIX}/services/<code>.<fmt>")
    def o311_service(code, fmt):
        if (bad := json_only(fmt)) is not None:
            return bad
        if code not in categories():
            return _error(404, f"service_code {code!r} is not offered; see {PREFIX}/services.json")
        return jsonify({"service_code": code, "attributes": []})

    def _rows(where=None) -> list[dict]:
        return cases.case_rows(store().read("problems", where=where))

    def _as_request(r: dict, names: dict, cats: dict, parents: dict) -> dict:
        cat = cats.get(r["category"] or "")
        parent = parents.get(r.get("duplicate_of"))
        notes = STATE_ZH.get(r["status"], r["status"])
        if r["status"] == LINKED:
            notes += f" → {r['duplicate_of']}"
        updated = r.get("closed_at") or r.get("stage_started_at") or r.get("reported_at")
        return {
            "service_request_id": r["problem_id"],
            "status": _open_closed(r["status"], parent),
            "status_notes": notes,
            "service_name": cat.name if cat else r["category"],
            "service_code": r["category"],
            "description": r.get("description"),
            "agency_responsible": names.get(r.get("unit_id"), r.get("unit_id")),
            "service_notice": (f"由 {names.get(r.get('unit_id'), r.get('unit_id'))} 负责"
                               + (f", 处置时限 {w3c(r['target_at'])}" if r.get("target_at") else "")),
            "requested_datetime": w3c(r.get("reported_at")),
            "updated_datetime": w3c(updated),
            "expected_datetime": w3c(r.get("target_at") or r.get("stage_deadline")),
            "address": r.get("address"),
            "address_id": None,
            "zipcode": None,
            "lat": None if r.get("location_placeholder") else float(r["lat"]),
            "long": None if r.get("location_placeholder") else float(r["lon"]),
            "media_url": None,
        }

    def _answer(rows: list[dict]):
        units = store().read("units")
        names = dict(zip(units["unit_id"], units["name"]))
        parent_ids = sorted({r["duplicate_of"] for r in rows if r.get("duplicate_of")})
        parents = {}
        if parent_ids:
            got = store().read("problems", where={"problem_id": parent_ids})
            parents = dict(zip(got["problem_id"], got["status"]))
        cats = categories()
        return jsonify([_as_request(r, names, cats, parents) for r in rows])

    @app.get(f"{PREFIX}/requests/<request_id>.<fmt>")
    def o311_request(request_id, fmt):
        if (bad := json_only(fmt)) is not None:
            return bad
        rows = _rows({"problem_id": request_id})
        if not rows:
            return _error(404, f"no service request {request_id!r}")
        return _answer(rows)

    def _time(name):
        return cases.parse_time(request.args.get(name), name, "a W3C datetime, e.g. 2026-11-01T00:00:00Z")

    @app.get(f"{PREFIX}/requests.<fmt>")
    def o311_requests(fmt):
        if (bad := json_only(fmt)) is not None:
            return bad
        a = request.args
        if a.get("service_request_id"):
            ids = [i.strip() for i in a["service_request_id"].split(",") if i.strip()]
            rows = _rows({"problem_id": ids})
            return _answer(rows)
        try:
            start, end = _time("start_date"), _time("end_date")
        except ZonemapError as exc:
            return _error(400, str(exc))
        status = [s.strip() for s in a.get("status", "").split(",") if s.strip()]
        if any(s not in ("open", "closed") for s in status):
            return _error(400, "status is open, closed or open,closed")
        where = {"category": [c.strip() for c in a["service_code"].split(",")]} if a.get("service_code") else None
        rows = _rows(where)
        if start is None and end is None:
            start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=DEFAULT_DAYS)
        parents = {r["problem_id"]: r["status"] for r in rows}
        out = []
        for r in rows:
            at = pd.Timestamp(r["reported_at"]) if r.get("reported_at") is not None else None
            if at is not None:
                at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
            if start is not None and (at is None or at < start):
                continue
            if end is not None and (at is None or at > end):
                continue
            if status and _open_closed(r["status"], parents.get(r.get("duplicate_of"))) not in status:
                continue
            out.append(r)
        out.sort(key=lambda r: (str(r.get("reported_at")), r["problem_id"]), reverse=True)
        return _answer(out[:MAX_RESULTS])

    @app.post(f"{PREFIX}/requests.<fmt>")
    def o311_post(fmt):
        if (bad := json_only(fmt)) is not None:
            return bad
        f = request.form.to_dict() if request.form else (request.get_json(silent=True) or {})
        if not isinstance(f, dict):
            return _error(400, "send the request's fields as a form (or a JSON object)")
        if not f.get("service_code"):
            return _error(400, "service_code is required; see services.json")
        if f.get("lat") in (None, "") or f.get("long") in (None, ""):
            return _error(400, "lat and long are required (WGS 84); this server does not geocode addresses")
        contact = ", ".join(str(f[k]) for k in ("first_name", "last_name", "email", "phone") if f.get(k)) or None
        data = {"lon": f.get("long"), "lat": f.get("lat"), "crs": "wgs84", "category": f.get("service_code"),
                "description": f.get("description"), "address": f.get("address_string"), "contact": contact}
        if f.get("media_url"):
            import json as _json

            data["attrs"] = _json.dumps({"media_url": str(f["media_url"])[:1000]}, ensure_ascii=False)
        try:
            user = app.extensions["current_user"](f.get("api_key"))
            answer = app.extensions["report"](data, user, "open311")
        except HTTPException as exc:
            return _error(exc.code or 400, exc.description)
        except cases.Forbidden as exc:
            return _error(403, str(exc))
        except ZonemapError as exc:
            return _error(400, str(exc))
        notice = f"由 {answer['unit_name']} 负责"
        if answer.get("duplicate_of"):
            notice += f"; 与 {answer['duplicate_of']} 重复,已关联"
        return jsonify([{"service_request_id": answer["problem_id"], "service_notice": notice,
                         "account_id": None}])
