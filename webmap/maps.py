"""Folium map pages. The page carries no data: the browser fetches each layer for the view
from /api/layers/<name>.geojson?bbox=… and redraws on every move. Leaflet comes from our own
server (installed from npm), so the map works on an intranet with no internet; our own roads
and buildings are the base, OpenStreetMap tiles an optional layer."""

from __future__ import annotations

import json

import folium
from branca.element import Element, MacroElement
from jinja2 import Template
from markupsafe import escape

from .i18n import popup_values

ATTRIBUTION = "© OpenStreetMap contributors"

# Style per layer: drawn bottom to top.
STYLES = {
    "areas": {"color": "#7b9e5a", "weight": 1, "fillOpacity": 0.15},
    "zones": {"color": "#d9480f", "weight": 1.5, "fillOpacity": 0.25},
    "grid": {"color": "#868e96", "weight": 1, "dashArray": "4", "fillOpacity": 0},
    "sites": {"color": "#f08c00", "weight": 2, "fillOpacity": 0.2},
    "roads": {"color": "#495057", "weight": 2},
    "buildings": {"color": "#364fc7", "weight": 1, "fillOpacity": 0.35},
    "pois": {"color": "#c2255c", "radius": 4, "fillOpacity": 0.9},
    "units": {"color": "#5f3dc4", "radius": 4, "fillOpacity": 0.9},
    "problems": {"color": "#e03131", "radius": 5, "fillOpacity": 0.9},
}
SHOWN = ("zones", "roads", "buildings", "pois", "problems")
# problems by state: open cases stand out, finished ones fade, duplicates are small
STATUS_STYLES = {
    "closed": {"color": "#495057", "fillColor": "#adb5bd", "fillOpacity": 0.6},
    "voided": {"color": "#adb5bd", "fillColor": "#dee2e6", "fillOpacity": 0.4},
    "linked": {"radius": 3, "fillOpacity": 0.5},
}
# zones are coloured by kind, so that a frontage, a unit's ground and public space read apart
KIND_STYLES = {
    "frontage": {"color": "#d9480f", "fillColor": "#ff922b", "fillOpacity": 0.45},
    "unit": {"color": "#2b8a3e", "fillColor": "#51cf66", "fillOpacity": 0.35},
    "site": {"color": "#e67700", "fillColor": "#fcc419", "fillOpacity": 0.45},
    "public": {"color": "#868e96", "fillColor": "#ced4da", "fillOpacity": 0.15, "weight": 0.5},
}


class BBoxLayers(MacroElement):
    """Leaflet GeoJSON layers that load from the API for the current view."""

    _template = Template("""
{% macro script(this, kwargs) %}
(function () {
  var map = {{ this._parent.get_name() }};
  var cfg = {{ this.config }};
  map.attributionControl.addAttribution(cfg.attribution);
  var overlays = {};
  function popup(props) {
    // untrusted text: built with textContent, never as HTML
    var box = document.createElement("div");
    box.className = "zm-popup";
    cfg.fields.forEach(function (f) {
      if (props[f[0]] === null || props[f[0]] === undefined || props[f[0]] === "") return;
      var row = document.createElement("div");
      var k = document.createElement("b"); k.textContent = f[1] + ": ";
      var words = cfg.values[f[0]], raw = props[f[0]];
      var text = words && words[raw] !== undefined ? words[raw] : String(raw);
      if (/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}/.test(text)) text = text.slice(0, 16).replace("T", " ");
      var v = document.createElement("span"); v.textContent = text;
      row.appendChild(k); row.appendChild(v); box.appendChild(row);
    });
    return box;
  }
  // the zone kinds' colours with their names (textContent); folded on a phone
  function legend(folded) {
    var ctl = L.control({position: "bottomleft"});
    ctl.onAdd = function () {
      var box = L.DomUtil.create("details", "zm-legend leaflet-control");
      box.id = "zm-legend";
      box.open = !folded;
      var head = L.DomUtil.create("summary", "", box);
      head.textContent = cfg.legend;
      Object.keys(cfg.kinds).forEach(function (kind) {
        var row = L.DomUtil.create("div", "", box);
        row.setAttribute("data-kind", kind);
        var sw = L.DomUtil.create("span", "zm-swatch", row), k = cfg.kind_styles[kind] || {};
        sw.style.background = k.fillColor || k.color || "#fff";
        sw.style.borderColor = k.color || "#000";
        L.DomUtil.create("span", "", row).textContent = cfg.kinds[kind];
      });
      L.DomEvent.disableClickPropagation(box);
      L.DomEvent.disableScrollPropagation(box);
      return box;
    };
    ctl.addTo(map);
  }
  cfg.layers.forEach(function (spec) {
    var style = spec.style;
    var layer = L.geoJSON(null, {
      style: function (f) {
        var k = f && f.properties && cfg.kind_styles[f.properties.kind];
        return k ? Object.assign({}, style, k) : style;
      },
      pointToLayer: function (f, latlng) {
        var s = f.properties && cfg.status_styles[f.properties.status];
        return L.circleMarker(latlng, s ? Object.assign({}, style, s) : style);
      },
      // popups pan clear of the controls in the map's corners (zoom, layers: 44 px each)
      onEachFeature: function (f, l) {
        l.bindPopup(function () { return popup(f.properties); }, {autoPanPadding: [60, 60], maxWidth: 260});
      }
    });
    layer.zmName = spec.name;
    overlays[spec.label] = layer;
    if (spec.shown) layer.addTo(map);
  });
  if (cfg.tiles) overlays[cfg.tiles_label] = L.tileLayer(cfg.tiles, {maxZoom: 19, attribution: cfg.attribution});
  // a phone gets the layer list folded behind its button: open, it would cover the map
  var phone = window.matchMedia("(max-width: 700px)").matches;
  L.control.layers(null, overlays, {collapsed: phone}).addTo(map);
  L.control.scale({imperial: false}).addTo(map);  // metres only: nobody here measures in feet
  legend(phone);
  var note = document.getElementById("zm-note");
  var pending = 0, timer = null;
  function load() {
    var b = map.getBounds();
    var bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]
      .map(function (v) { return v.toFixed(6); }).join(",");
    var truncated = false;
    Object.keys(overlays).forEach(function (label) {
      var layer = overlays[label];
      if (!layer.zmName || !map.hasLayer(layer)) return;
      pending++;
      fetch(cfg.api + layer.zmName + ".geojson?bbox=" + bbox + "&limit=" + cfg.limit)
        .then(function (r) { return r.json(); })
        .then(function (fc) {
          layer.clearLayers();
          if (fc.features) layer.addData(fc);
          if (fc.truncated) truncated = true;
        })
        .catch(function (e) { console.error("zonemap: layer " + layer.zmName, e); })
        .finally(function () {
          pending--;
          if (pending === 0) {
            note.textContent = truncated ? cfg.truncated : "";
            document.body.setAttribute("data-zm-loaded", "1");
          }
        });
    });
  }
  // a reload redraws the layers, which would close an open popup: the pan that brings a
  // popup into view (a phone's narrow screen) waits until it is closed
  var popupOpen = false, stale = false;
  function later() {
    if (popupOpen) { stale = true; return; }
    clearTimeout(timer); timer = setTimeout(load, 150);
  }
  map.on("popupopen", function () { popupOpen = true; });
  map.on("popupclose", function () { popupOpen = false; if (stale) { stale = false; later(); } });
  map.on("moveend overlayadd", later);
  load();
})();
{% endmacro %}
""")

    def __init__(self, config: dict):
        super().__init__()
        self._name = "BBoxLayers"
        self.config = json.dumps(config, ensure_ascii=False)


def layers_page(extent, lab: dict, lang: str, leaflet_base: str | None, header: str = "") -> str:
    """HTML of the layers map for a store whose extent is (W, S, E, N) or None, under the
    pages' shared `header` (HTML rendered from templates/header.html) and stylesheet. `lab`
    holds the labels of i18n.labels plus `kinds` (zone kind → name) for the legend."""
    m = folium.Map(tiles=None, control_scale=False, prefer_canvas=False)  # the scale: metric, in BBoxLayers
    if leaflet_base:
        m.default_js = [("leaflet", f"{leaflet_base}/leaflet.js")]
        m.default_css = [("leaflet_css", f"{leaflet_base}/leaflet.css")]
    # ours after Leaflet's, so that its rules (44 px controls, the page's layout) win
    m.default_css = [*m.default_css, ("zonemap_css", "static/zm/zonemap.css")]
    if extent:
        w, s, e, n = extent
        m.fit_bounds([[s, w], [n, e]])
    else:
        m.location, m.zoom_start = [32.05, 118.78], 12
    cfg = {"api": "api/layers/", "limit": 5000, "attribution": ATTRIBUTION,
           "tiles": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
           "tiles_label": lab["osm_tiles"], "truncated": lab["truncated"],
           "fields": [[k, v] for k, v in lab["fields"].items()], "values": popup_values(lang),
           "kind_styles": KIND_STYLES,
           "status_styles": STATUS_STYLES, "legend": lab["legend"],
           "kinds": {k: lab["kinds"][k] for k in KIND_STYLES},
           "layers": [{"name": n, "label": lab["layers"][n], "style": STYLES[n], "shown": n in SHOWN}
                      for n in STYLES]}
    BBoxLayers(cfg).add_to(m)
    root = m.get_root()
    root.title = lab["title"]
    empty = "" if extent else f'<p class="zm-mapnote" id="zm-empty">{escape(lab["empty"])}</p>'
    # the header, then notes (an empty store; too many features here), then the map below them
    root.html.add_child(Element(f'{header}{empty}<p class="zm-mapnote" id="zm-note" role="status"></p>'))
    html = root.render()
    return html.replace('<html>', f'<html lang="{"zh-CN" if lang == "zh" else "en"}">', 1)
