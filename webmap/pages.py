"""Pages for people: the map, the phone report page and the case desk (HTML; the data comes
from the api blueprint). All wear the header of templates/header.html (user, role, logout,
language) and webmap/static_zm/zonemap.css; the case desk is for a signed-in session, the report
page for anyone (the public, or a grid worker signed in)."""

from __future__ import annotations

import logging
from itertools import groupby

from flask import Blueprint, Response, render_template, request

from layers.users import ANONYMOUS
from layers.workflow import LINKED, STATE_ZH, STATES

from .assets import LEAFLET_DIST
from .common import current_user, page_map, services
from .i18n import cases_labels, inspector_labels, labels, pick_lang, report_labels, workspace_labels
from .maps import layers_page
from .planner_pages import to_login

bp = Blueprint("pages", __name__)
log = logging.getLogger("zonemap.web")


@bp.get("/")
def index():
    lang = pick_lang(request.args.get("lang"))
    leaflet = "vendor/leaflet" if (LEAFLET_DIST / "leaflet.js").exists() else None
    if leaflet is None:
        log.warning("Leaflet is not installed under webmap/node_modules (run scripts/run); "
                    "the page falls back to Folium's CDN and needs the internet")
    lab = {**labels(lang), "kinds": workspace_labels(lang)["kinds"]}
    html = layers_page(services().store.extent(), lab, lang, leaflet, page_map(lang), render_template("header.html"))
    return Response(html, mimetype="text/html")


@bp.get("/report")
def report():
    """The phone page: pick a category, locate, describe, photograph, send; see who answers."""
    lang = pick_lang(request.args.get("lang"))
    cats = list(services().rules.categories.values())
    groups = [(major, list(items)) for major, items in groupby(cats, key=lambda c: c.major)]
    return render_template("report.html", t=report_labels(lang), lang=lang, groups=groups)


@bp.get("/cases")
def cases():
    """The case desk: the cases the signed-in user may see, with lights, steps and the moves
    their role may make (the page calls the same API with the session cookie); the signed-out
    are sent to /login and come back here."""
    if current_user() is ANONYMOUS:
        return to_login()
    lang = pick_lang(request.args.get("lang"))
    states = [(s, STATE_ZH[s]) for s in (*STATES, LINKED)]
    return render_template("cases.html", t={**inspector_labels(lang), "title": cases_labels(lang)["title"]},
                           lang=lang, states=states)


@bp.get("/favicon.ico")
def favicon():
    return Response(status=204)
