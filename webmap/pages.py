"""Pages for people: the map, the phone report page and the case desk (HTML; the data comes
from the api blueprint)."""

from __future__ import annotations

import logging
from itertools import groupby
from pathlib import Path

from flask import Blueprint, Response, render_template, request, send_from_directory

from layers.workflow import LINKED, STATE_ZH, STATES

from .common import services
from .i18n import cases_labels, labels, pick_lang, report_labels
from .maps import layers_page

LEAFLET_DIST = Path(__file__).resolve().parent / "node_modules" / "leaflet" / "dist"

bp = Blueprint("pages", __name__)
log = logging.getLogger("zonemap.web")


@bp.get("/")
def index():
    lang = pick_lang(request.args.get("lang"))
    leaflet = "vendor/leaflet" if (LEAFLET_DIST / "leaflet.js").exists() else None
    if leaflet is None:
        log.warning("Leaflet is not installed under webmap/node_modules (run scripts/run); "
                    "the page falls back to Folium's CDN and needs the internet")
    html = layers_page(services().store.extent(), labels(lang), lang, leaflet)
    return Response(html, mimetype="text/html")


@bp.get("/vendor/leaflet/<path:name>")
def vendor(name):
    return send_from_directory(LEAFLET_DIST, name, max_age=86400)


@bp.get("/report")
def report():
    """The phone page: pick a category, locate, describe, photograph, send; see who answers."""
    lang = pick_lang(request.args.get("lang"))
    cats = list(services().rules.categories.values())
    groups = [(major, list(items)) for major, items in groupby(cats, key=lambda c: c.major)]
    return render_template("report.html", t=report_labels(lang), lang=lang, groups=groups)


@bp.get("/cases")
def cases():
    """The case desk: the cases a token's user may see, with lights, steps and the moves its
    role may make (the page calls the same API)."""
    lang = pick_lang(request.args.get("lang"))
    states = [(s, STATE_ZH[s]) for s in (*STATES, LINKED)]
    return render_template("cases.html", t=cases_labels(lang), lang=lang, states=states,
                           states_map=dict(states))


@bp.get("/favicon.ico")
def favicon():
    return Response(status=204)
