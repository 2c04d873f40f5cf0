"""The case API: report a problem, list and read cases, move them along the workflow.

Authentication: `Authorization: Bearer TOKEN` (tokens from `zonemap token NAME`). Without a
token a request acts as the public: it may report (unless REPORTS_NEED_TOKEN is set) and read
nothing but Open311. A bad or revoked token is refused with 401, a role that may not act with
403, a move the case's state does not allow with 409; each answer says why."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, abort, jsonify, request

from layers import cases
from layers.users import ANONYMOUS, User, user_for_token

MAX_PHOTO = 10 * 1024 * 1024
PHOTO_KINDS = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}


def photo_kind(head: bytes) -> str | None:
    for magic, ext in PHOTO_KINDS.items():
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def register(app: Flask, store, router) -> None:
    rules = cases.Rules()
    app.config.setdefault("REPORTS_NEED_TOKEN", False)
    app.config.setdefault("MAX_CONTENT_LENGTH", MAX_PHOTO + 1024 * 1024)
    app.extensions["rules"] = rules

    def current_user(token: str | None = None) -> User:
        header = request.headers.get("Authorization", "")
        if header:
            kind, _, value = header.partition(" ")
            if kind.lower() != "bearer" or not value.strip():
                abort(401, "Authorization must be 'Bearer TOKEN' (get one with `zonemap token NAME`)")
            token = value.strip()
        if not token:
            return ANONYMOUS
        user = user_for_token(store(), token)
        if user is None:
            abort(401, "the token is unknown or revoked; ask an admin for a new one (`zonemap token NAME`)")
        return user

    def signed_in(token: str | None = None) -> User:
        user = current_user(token)
        if user is ANONYMOUS:
            abort(401, "sign in: send Authorization: Bearer TOKEN (get one with `zonemap token NAME`)")
        return user

    app.extensions["current_user"] = current_user

    def photos_dir() -> Path:
        if app.config.get("PHOTOS"):
            return Path(app.config["PHOTOS"])
        db = str(app.config["DB"])
        base = Path(db).parent if "://" not in db else Path(__file__).resolve().parents[1] / "var"
        return base / "photos"

    def report(data: dict, user: User, channel: str, upload=None) -> dict:
        if user is ANONYMOUS and app.config["REPORTS_NEED_TOKEN"]:
            abort(401, "reports need a token on this server (Authorization: Bearer TOKEN)")
        now = cases.utc_now()
        pid = cases.new_id(now)
        saved = None
        if upload is not None and upload.filename:
            head = upload.stream.read(16)
            kind = photo_kind(head)
            if kind is None:
                abort(400, f"photo {upload.filename!r} is not a JPEG, PNG or WebP image")
            body = head + upload.stream.read(MAX_PHOTO + 1 - len(head))
            if len(body) > MAX_PHOTO:
                abort(413, f"photo {upload.filename!r} is larger than {MAX_PHOTO // 1024 // 1024} MB")
            folder = photos_dir()
            folder.mkdir(parents=True, exist_ok=True)
            saved = folder / f"{pid}.{kind}"
            saved.write_bytes(body)
            data = {**data, "photo": saved.name}
        try:
            return cases.report_one(store(), data, user, channel, now=now, rules=rules, router=router(),
                                    problem_id=pid)
        except BaseException:
            if saved is not None:
                saved.unlink(missing_ok=True)
            raise

    app.extensions["report"] = report

    @app.get("/report")
    def report_page():
        """The phone page: pick a category, locate, describe, photograph, send; see who answers."""
        from itertools import groupby

        from flask import render_template

        from .i18n import pick_lang, report_labels

        lang = pick_lang(request.args.get("lang"))
        t = report_labels(lang)
        cats = list(rules.categories.values())
        groups = [(major, list(items)) for major, items in groupby(cats, key=lambda c: c.major)]
        return render_template("report.html", t=t, lang=lang, groups=groups)

    @app.get("/cases")
    def cases_page():
        """The case desk: the cases a token's user may see, with lights, steps and the moves
        its role may make (the page calls the same API)."""
        from flask import render_template

        from layers.workflow import LINKED, STATE_ZH, STATES

        from .i18n import cases_labels, pick_lang

        lang = pick_lang(request.args.get("lang"))
        states = [(s, STATE_ZH[s]) for s in (*STATES, LINKED)]
        return render_template("cases.html", t=cases_labels(lang), lang=lang, states=states,
                               states_map=dict(states))

    @app.get("/api/categories")
    def api_categories():
        return jsonify([{"code": c.code, "name": c.name, "major": c.major, "limit": c.limit,
                         "limit_unit": c.limit_unit, "urgency": c.urgency, "department": c.department}
                        for c in rules.categories.values()])

    @app.post("/api/problems")
    def api_report():
        """JSON {lon, lat, crs, category, description, address, contact}, or the same as form
        fields with a `photo` file (multipart/form-data)."""
        if request.mimetype == "multipart/form-data" or request.mimetype == "application/x-www-form-urlencoded":
            data, upload = request.form.to_dict(), request.files.get("photo")
        else:
            data, upload = request.get_json(silent=True), None
            if not isinstance(data, dict):
                abort(400, "send a JSON object: {\"lon\": …, \"lat\": …, \"crs\": \"wgs84\", \"category\": \"06010\", "
                           "\"description\": …}, or a multipart form with a photo")
        # the stored photo's name and the attrs JSON are zonemap's to set, never a client's
        data = {k: v for k, v in data.items() if k not in ("photo", "attrs", "problem_id")}
        user = current_user()
        answer = report(data, user, "api", upload)
        return jsonify(answer), 201

    def _page_args():
        try:
            page = int(request.args.get("page", 1))
            per_page = int(request.args.get("per_page", 50))
        except ValueError:
            abort(400, "page and per_page must be whole numbers")
        return page, per_page

    @app.get("/api/cases")
    def api_cases():
        from .app import _bbox_arg

        user = signed_in()
        page, per_page = _page_args()
        a = request.args
        got = cases.list_cases(store(), user, bbox=_bbox_arg(a.get("bbox")), status=a.get("status"),
                               category=a.get("category"), unit=a.get("unit"), since=a.get("since"),
                               until=a.get("until"), page=page, per_page=per_page,
                               include_linked=a.get("linked") in ("1", "true", "yes"), rules=rules)
        return jsonify(got)

    @app.get("/api/cases/<problem_id>")
    def api_case(problem_id):
        return jsonify(cases.get_case(store(), problem_id, signed_in(), rules=rules))

    @app.post("/api/cases/<problem_id>/transition")
    def api_transition(problem_id):
        """JSON {action, note?, unit_id? (dispatch to another unit)}."""
        user = signed_in()
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("action"), str):
            abort(400, "send a JSON object with an action, e.g. {\"action\": \"dispatch\", \"note\": \"…\"}")
        try:
            cases.get_case(store(), problem_id, user, rules=rules)  # a unit may not probe others' cases
        except cases.NotFound:
            abort(404, f"no case {problem_id!r}")
        note = data.get("note")
        return jsonify(cases.transition(store(), problem_id, data["action"], user,
                                        note=None if note is None else str(note),
                                        unit_id=data.get("unit_id"), rules=rules))

    @app.get("/api/me")
    def api_me():
        return jsonify(signed_in().to_dict())

    @app.errorhandler(cases.Refused)
    def refused(exc):
        return jsonify({"error": str(exc), "status": 409}), 409

    @app.errorhandler(cases.Forbidden)
    def forbidden(exc):
        return jsonify({"error": str(exc), "status": 403}), 403

    @app.errorhandler(cases.NotFound)
    def not_found(exc):
        return jsonify({"error": str(exc), "status": 404}), 404


def w3c(value) -> str | None:
    """ISO 8601 / W3C datetime with offset, as Open311 wants."""
    if value is None:
        return None
    import pandas as pd

    t = pd.Timestamp(value)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["register", "w3c"]
