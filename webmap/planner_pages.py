"""The planner's workspace, as pages: /planner (zones coloured by kind or unit, a zone's panel,
search, reassign, draw/reshape/split/merge, QA findings, history and restore) and /units (fill
in and merge units), the header every page of templates/base.html shows (user, role, logout,
language), and the assets those pages load from our own server: the stylesheet
(webmap/static_zm/) and Leaflet-Geoman (npm). The pages hold no data: their scripts call the
planner API (webmap/planner_api.py), the same routes an API client uses."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, g, redirect, render_template, request

from layers.errors import Forbidden, ZonemapError
from layers.users import ANONYMOUS, User

from .common import current_user, page_map, services
from .i18n import pick_lang, workspace_labels
from .maps import KIND_STYLES

EDITORS = ("planner", "admin")  # the roles that may see and change zones and units
STAFF = ("inspector", "dispatcher", "unit", "planner", "admin")

bp = Blueprint("planner_pages", __name__)


def _lang() -> str:
    return pick_lang(request.args.get("lang"))


def _viewer() -> User:
    """Who is asking, for the header: never refuses (a bad token shows as signed out)."""
    user = g.get("user")
    if user is None:
        try:
            user = current_user()
        except ZonemapError:
            user = ANONYMOUS
    return user


def _csrf() -> str:
    """The CSRF token of this session for <meta name="csrf-token">; empty when the app has no
    CSRF protection (the page's script then asks /api/session)."""
    try:
        from flask_wtf.csrf import generate_csrf
    except ImportError:
        return ""
    try:
        return generate_csrf()
    except (RuntimeError, KeyError):  # no SECRET_KEY: CSRF is not set up in this app
        return ""


def _switch_url(lang: str) -> str:
    """This page in the other language, keeping its other parameters (login's `next`)."""
    args = {k: v for k, v in request.args.items() if k != "lang"}
    args["lang"] = workspace_labels(lang)["other"]
    return request.path + "?" + urlencode(args)


@bp.app_context_processor
def _page_context():
    """`zm_page()` for templates/base.html: asked only by the pages that extend it."""
    def zm_page() -> dict:
        lang, user = _lang(), _viewer()
        return {"lang": lang, "t": workspace_labels(lang), "user": None if user is ANONYMOUS else user,
                "editor": user.role in EDITORS, "staff": user.role in STAFF, "csrf": _csrf(),
                "switch_url": _switch_url(lang), "here": request.full_path.rstrip("?")}
    return {"zm_page": zm_page}


def _editor_or_login():
    """The signed-in planner or admin; the public is sent to sign in, any other role is
    refused (403)."""
    user = current_user()
    if user is ANONYMOUS:
        return None
    if user.role not in EDITORS:
        raise Forbidden(f"{user.name} ({user.role}) may not open {request.path}: "
                        "the planner's pages are for planners and admins")
    return user


def to_login():
    return redirect("login?" + urlencode({"next": request.full_path.rstrip("?"), "lang": _lang()}), code=303)


@bp.get("/planner")
def planner():
    """The planner's map: the data comes from /api/planner/…"""
    user = _editor_or_login()
    if user is None:
        return to_login()
    lang = _lang()
    return render_template("planner.html", lang=lang, t=workspace_labels(lang), user=user,
                           kind_styles=KIND_STYLES, extent=services().store.extent(),
                           map_cfg=page_map(lang, editing=True))


@bp.get("/units")
def units():
    """The units' list: search, edit, merge a placeholder into a real unit (/api/units…)."""
    user = _editor_or_login()
    if user is None:
        return to_login()
    lang = _lang()
    return render_template("units.html", lang=lang, t=workspace_labels(lang), user=user)


@bp.errorhandler(ZonemapError)
def _error_page(exc):
    """A refusal on these pages is a page in the product's frame, not JSON."""
    return render_template("error.html", status=exc.status, message=str(exc)), exc.status
