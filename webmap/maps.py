"""The map page (Folium) and what every map page shares: the basemaps a deployment may choose,
the layers' styles and map_config, the configuration static_zm/zonemap-map.js draws from.
The pages carry no data: the browser fetches vector tiles (/tiles/…) and, for the small
layers, GeoJSON of the view. Leaflet and its plugins come from our own server (npm), so the
map works on an intranet with no internet, drawing our own roads and buildings."""

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


# The basemaps a deployment may choose (ZONEMAP_BASEMAP). "none" draws nothing but our own
# roads and buildings, and asks no other host; the others are raster tiles from their owners,
# who must be reachable from the browsers. AMap's tiles are in GCJ-02: on it every other layer
# is shifted (tiles by the server through geo/crs.py, points and shapes by zonemap-map.js).
BASEMAPS = {
    "osm": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "subdomains": "abc",
            "hosts": ["https://tile.openstreetmap.org"], "max_native_zoom": 19,
            "attribution": "© OpenStreetMap contributors", "shift": None},
    "tianditu": {"url": "https://t{s}.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
                        "&LAYER=vec&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}"
                        "&TILECOL={x}&tk={tk}",
                 "labels": "https://t{s}.tianditu.gov.cn/cva_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
                           "&LAYER=cva&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}"
                           "&TILECOL={x}&tk={tk}",
                 "subdomains": "01234567", "hosts": ["https://*.tianditu.gov.cn"], "max_native_zoom": 18,
                 "attribution": "天地图 © 国家地理信息公共服务平台", "shift": None},
    "amap": {"url": "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8"
                    "&x={x}&y={y}&z={z}",
             "subdomains": "1234", "hosts": ["https://*.is.autonavi.com"], "max_native_zoom": 18,
             "attribution": "© 高德地图 AutoNavi", "shift": "gcj02"},
}
MAJOR_ROADS = ["motorway", "trunk", "primary", "secondary", "motorway_link", "trunk_link", "primary_link"]
MAX_NATIVE_ZOOM = 18  # past it the tiles of z18 are drawn larger: no more detail to fetch


def basemap_hosts(basemap: str) -> list[str]:
    """The hosts the pages load basemap images from (for the Content-Security-Policy)."""
    return list(BASEMAPS.get(basemap, {}).get("hosts", []))


def map_config(lab: dict, basemap: str, tianditu_key: str | None = None, editing: bool = False,
               zooms: dict[str, int] | None = None) -> dict:
    """What zonemap-map.js needs to draw a page's map: the basemaps, the tile layers with their
    first zooms (`zooms`, the store's TileCache.first_zooms; MIN_ZOOM without), styles and
    words (`lab`: i18n.map_labels). An editing page (the planner) never works shifted: on an
    AMap deployment it draws on our own base, in true coordinates."""
    from layers.tiles import MIN_ZOOM

    chosen = BASEMAPS.get(basemap) if not (editing and basemap == "amap") else None
    bases = [{"id": "none", "label": lab["base_none"]}]
    if chosen:
        key = tianditu_key or ""
        bases.append({"id": basemap, "label": lab["bases"][basemap], "url": chosen["url"].replace("{tk}", key),
                      "labels": chosen.get("labels", "").replace("{tk}", key) or None,
                      "subdomains": chosen["subdomains"], "max_native_zoom": chosen["max_native_zoom"],
                      "attribution": chosen["attribution"]})
    return {"base": basemap if chosen else "none", "bases": bases, "shift": chosen["shift"] if chosen else None,
            "attribution": ATTRIBUTION, "max_native_zoom": MAX_NATIVE_ZOOM, "major_roads": MAJOR_ROADS,
            "tiles": {name: {"url": f"tiles/{name}/{{z}}/{{x}}/{{y}}.pbf", "min_zoom": z}
                      for name, z in (zooms or MIN_ZOOM).items()},
            "kind_styles": KIND_STYLES, "status_styles": STATUS_STYLES, "labels": lab}


class MapLayers(MacroElement):
    """The map page's layers: the basemap, roads, buildings, zones and problems as vector
    tiles (static_zm/zonemap-map.js) from their minimum zooms, clickable (a click fetches the
    feature's public record from /api/layers/{name}/{key}.geojson), and the smaller layers
    (parcels, sites, grid cells, POIs, units) as GeoJSON of the view from GEOJSON_FROM_ZOOM."""

    _template = Template("""
{% macro script(this, kwargs) %}
(function () {
  var map = {{ this._parent.get_name() }};
  var cfg = {{ this.config }};
  var base = ZMMap.init(map, cfg.map, undefined, function (name, props, latlng) { open(name, null, latlng, props); });
  var overlays = base.overlays;
  window.zmMap = {map: map};  // for the browser tests
  function words(key, raw) {
    var w = cfg.values[key];
    var text = w && w[raw] !== undefined ? w[raw] : String(raw);
    return /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}/.test(text) ? text.slice(0, 16).replace("T", " ") : text;
  }
  function content(props) {  // untrusted text: as text only (ZMMap.rows)
    return ZMMap.rows(cfg.fields.filter(function (f) {
      return props[f[0]] !== null && props[f[0]] !== undefined && props[f[0]] !== "";
    }).map(function (f) { return [f[1], words(f[0], props[f[0]])]; }));
  }
  var POPUP = {autoPanPadding: [60, 60], maxWidth: 260};
  // a tile's feature clicked: its record from the API (a tile carries what a map needs to draw)
  function open(name, key, latlng, props) {
    var shown = L.popup(POPUP).setLatLng(latlng).setContent(content(props || {})).openOn(map);
    if (key === undefined || key === null) return Promise.resolve(shown);
    return fetch(cfg.api + name + "/" + encodeURIComponent(key) + ".geojson").then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (f) {
      if (f && map.hasLayer(shown)) shown.setContent(content(f.properties));
      return shown;
    });
  }
  map.createPane("zm-problems").style.zIndex = 450;  // above the zones
  var tiled = {
    zones: ZMMap.vector("zones", {onClick: function (p, ll) { open("zones", p.code, ll, p); }}),
    problems: ZMMap.vector("problems", {pane: "zm-problems",
                                        onClick: function (p, ll) { open("problems", p.problem_id, ll, p); }})
  };
  Object.keys(tiled).forEach(function (n) { overlays[cfg.map.labels[n]] = tiled[n]; tiled[n].addTo(map); });
  window.zmMap.open = open;
  var geo = [];
  cfg.layers.forEach(function (spec) {
    var style = spec.style;
    var layer = L.geoJSON(null, {
      style: function () { return style; },
      pointToLayer: function (f, latlng) { return L.circleMarker(latlng, style); },
      coordsToLatLng: function (c) { return ZMMap.toMap(c[1], c[0]); },
      onEachFeature: function (f, l) { l.bindPopup(function () { return content(f.properties); }, POPUP); }
    });
    layer.zmName = spec.name;
    overlays[spec.label] = layer;
    if (spec.shown) layer.addTo(map);
    geo.push(layer);
  });
  // a phone gets the layer list folded behind its button: open, it would cover the map
  var phone = window.matchMedia("(max-width: 700px)").matches;
  L.control.layers(base.bases, overlays, {collapsed: phone}).addTo(map);
  legend(phone);
  var note = document.getElementById("zm-note");
  ZMMap.zoomNote(map, document.getElementById("zm-zoom"), [tiled.zones, tiled.problems]);
  // the zone kinds' colours with their names (textContent); folded on a phone
  function legend(folded) {
    var ctl = L.control({position: "bottomleft"});
    ctl.onAdd = function () {
      var box = L.DomUtil.create("details", "zm-legend leaflet-control");
      box.id = "zm-legend";
      box.open = !folded;
      L.DomUtil.create("summary", "", box).textContent = cfg.legend;
      Object.keys(cfg.kinds).forEach(function (kind) {
        var row = L.DomUtil.create("div", "", box), k = cfg.map.kind_styles[kind] || {};
        row.setAttribute("data-kind", kind);
        var sw = L.DomUtil.create("span", "zm-swatch", row);
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
  // the small layers, for the view, from their zoom; the page says it is drawn (for the tests)
  // when every shown tile layer, the base's roads and buildings too, has its tiles, no reload
  // is waiting on its timer and no GeoJSON answer is outstanding
  var pending = 0, timer = null;
  var watched = Object.keys(tiled).map(function (n) { return tiled[n]; }).concat(
    Object.keys(base.tiled).map(function (n) { return base.tiled[n]; }));
  function loaded() {
    if (pending === 0 && timer === null && !watched.some(function (l) { return map.hasLayer(l) && l.isLoading(); })) {
      document.body.setAttribute("data-zm-loaded", "1");
    }
  }
  // Leaflet's own state, not the events alone: a layer fires "loading" once until all its
  // tiles are in, so a move while the last view still loads fires none (and the base's
  // layers started loading before these listeners)
  watched.forEach(function (l) {
    l.on("loading", function () { document.body.removeAttribute("data-zm-loaded"); });
    l.on("load", loaded);
  });
  function load() {
    var truncated = false, far = map.getZoom() < cfg.geojson_from_zoom;
    geo.forEach(function (layer) {
      if (!map.hasLayer(layer)) return;
      if (far) { layer.clearLayers(); return; }
      pending++;
      fetch(cfg.api + layer.zmName + ".geojson?bbox=" + ZMMap.bbox(map) + "&limit=" + cfg.limit)
        .then(function (r) { return r.json(); })
        .then(function (fc) {
          layer.clearLayers();
          if (fc.features) layer.addData(fc);
          if (fc.truncated) truncated = true;
        })
        .catch(function (e) { console.error("zonemap: layer " + layer.zmName, e); })
        .finally(function () {
          pending--;
          if (pending === 0) note.textContent = truncated ? cfg.truncated : "";
          loaded();
        });
    });
    loaded();
  }
  // a reload redraws the layers, which would close an open popup: the pan that brings a
  // popup into view (a phone's narrow screen) waits until it is closed
  var popupOpen = false, stale = false;
  function later() {
    if (popupOpen) { stale = true; loaded(); return; }
    clearTimeout(timer);
    document.body.removeAttribute("data-zm-loaded");
    timer = setTimeout(function () {
      timer = null;
      if (popupOpen) { stale = true; loaded(); return; }  // opened since: it stays open
      load();
    }, 150);
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
        self._name = "MapLayers"
        self.config = json.dumps(config, ensure_ascii=False)


GEOJSON_LAYERS = ("areas", "grid", "sites", "pois", "units")  # small enough to ask for the view
GEOJSON_SHOWN = ("pois",)
GEOJSON_FROM_ZOOM = 15


def layers_page(extent, lab: dict, lang: str, leaflet_base: str | None, map_cfg: dict, header: str = "") -> str:
    """HTML of the layers map for a store whose extent is (W, S, E, N) or None, under the
    pages' shared `header` (HTML rendered from templates/header.html) and stylesheet. `lab`
    holds the labels of i18n.labels plus `kinds` (zone kind → name) for the legend; `map_cfg`
    is map_config's (basemaps, tiles)."""
    m = folium.Map(tiles=None, control_scale=False, prefer_canvas=False, max_zoom=21)  # scale: ZMMap
    if leaflet_base:
        m.default_js = [("leaflet", f"{leaflet_base}/leaflet.js")]
        m.default_css = [("leaflet_css", f"{leaflet_base}/leaflet.css")]
    # ours after Leaflet's, so that its rules (44 px controls, the page's layout) win; VectorGrid
    # and the shared map script from our own server
    m.default_js = [*m.default_js, ("vectorgrid", "vendor/vectorgrid/Leaflet.VectorGrid.bundled.min.js"),
                    ("zonemap_map", "static/zm/zonemap-map.js")]
    m.default_css = [*m.default_css, ("zonemap_css", "static/zm/zonemap.css")]
    if extent:
        w, s, e, n = extent
        shift = map_cfg.get("shift") == "gcj02"
        if shift:
            from geo.crs import wgs84_to_gcj02

            (w, e), (s, n) = wgs84_to_gcj02([w, e], [s, n])
        m.fit_bounds([[float(s), float(w)], [float(n), float(e)]])
    else:
        m.location, m.zoom_start = [32.05, 118.78], 12
    cfg = {"api": "api/layers/", "limit": 5000, "map": map_cfg, "geojson_from_zoom": GEOJSON_FROM_ZOOM,
           "truncated": lab["truncated"], "fields": [[k, v] for k, v in lab["fields"].items()],
           "values": popup_values(lang), "legend": lab["legend"],
           "kinds": {k: lab["kinds"][k] for k in KIND_STYLES},
           "layers": [{"name": n, "label": lab["layers"][n], "style": STYLES[n], "shown": n in GEOJSON_SHOWN}
                      for n in GEOJSON_LAYERS]}
    MapLayers(cfg).add_to(m)
    root = m.get_root()
    root.title = lab["title"]
    empty = "" if extent else f'<p class="zm-mapnote" id="zm-empty">{escape(lab["empty"])}</p>'
    # the header, then notes (an empty store; too many features here; zoom in), then the map
    root.html.add_child(Element(f'{header}{empty}<p class="zm-mapnote" id="zm-note" role="status"></p>'
                                '<p class="zm-mapnote" id="zm-zoom" role="status"></p>'))
    html = root.render()
    return html.replace('<html>', f'<html lang="{"zh-CN" if lang == "zh" else "en"}">', 1)
