/* zonemap's map layers, shared by every map page (/, /inspector, /unit, /planner, /field).

   The server's vector tiles (/tiles/{layer}/{z}/{x}/{y}.pbf) drawn with Leaflet.VectorGrid, each
   from its layer's minimum zoom, so that no page ever downloads a whole layer; the basemap of
   the deployment's settings (none: our own roads and buildings, offline; osm; tianditu; amap);
   and, on an AMap basemap (GCJ-02), the shift of everything else onto it: tiles come shifted
   from the server (geo/crs.py), points and shapes from the API are shifted here with the same
   published formula (a browser test holds the two equal).

   The configuration comes from the page (webmap/maps.py map_config): ZMMap.init(map, cfg).
   Untrusted text (unit names) only ever goes in as textContent. */
window.ZMMap = (function () {
  "use strict";

  // Leaflet.VectorGrid 1.3.0 calls L.DomEvent.fakeStop on a click, which Leaflet 1.8 renamed
  // away (fixed upstream in Leaflet.VectorGrid#288, not yet released): the same stop by its name
  if (window.L && L.DomEvent && !L.DomEvent.fakeStop) L.DomEvent.fakeStop = L.DomEvent.stopPropagation;
  // a tile's point (a case) is a CircleMarker without a latlng: Leaflet asks one of the marker it
  // clicked (Leaflet.VectorGrid#168), so a point tells it from its tile and its pixel in it
  if (window.L && L.CircleMarker) {
    var circleLatLng = L.CircleMarker.prototype.getLatLng;
    L.CircleMarker.include({getLatLng: function () {
      var r = this._renderer;
      if (this._latlng || !this._point || !r || !r.getCoord || !r._map) return circleLatLng.call(this);
      var c = r.getCoord();
      return r._map.unproject(c.scaleBy(r._size).add(this._point), c.z);
    }});
  }

  // ---- GCJ-02, as geo/crs.py computes it (Krasovsky ellipsoid, the published offset) ----------
  var A = 6378245.0, EE = 0.00669342162296594323, PI = Math.PI;
  function inChina(lng, lat) { return lng >= 72.004 && lng <= 137.8347 && lat >= 0.8293 && lat <= 55.8271; }
  function offset(lng, lat) {
    var x = lng - 105.0, y = lat - 35.0;
    var dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x)) +
      (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0 +
      (20.0 * Math.sin(y * PI) + 40.0 * Math.sin(y / 3.0 * PI)) * 2.0 / 3.0 +
      (160.0 * Math.sin(y / 12.0 * PI) + 320.0 * Math.sin(y * PI / 30.0)) * 2.0 / 3.0;
    var dlng = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x)) +
      (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0 +
      (20.0 * Math.sin(x * PI) + 40.0 * Math.sin(x / 3.0 * PI)) * 2.0 / 3.0 +
      (150.0 * Math.sin(x / 12.0 * PI) + 300.0 * Math.sin(x / 30.0 * PI)) * 2.0 / 3.0;
    var rad = lat / 180.0 * PI, magic = 1 - EE * Math.sin(rad) * Math.sin(rad), sq = Math.sqrt(magic);
    return [dlng * 180.0 / (A / sq * Math.cos(rad) * PI), dlat * 180.0 / ((A * (1 - EE)) / (magic * sq) * PI)];
  }
  function wgsToGcj(lng, lat) {
    if (!inChina(lng, lat)) return [lng, lat];
    var d = offset(lng, lat);
    return [lng + d[0], lat + d[1]];
  }
  function gcjToWgs(lng, lat) {  // fixed-point iteration, as geo/crs.py (centimetres)
    if (!inChina(lng, lat)) return [lng, lat];
    var w = [lng, lat];
    for (var i = 0; i < 30; i++) {
      var f = wgsToGcj(w[0], w[1]), ex = f[0] - lng, ey = f[1] - lat;
      w = [w[0] - ex, w[1] - ey];
      if (Math.abs(ex) < 1e-10 && Math.abs(ey) < 1e-10) break;
    }
    return w;
  }

  var cfg = null;
  // where a WGS 84 point is drawn on this map, and back (identity unless the basemap is GCJ-02)
  function toMap(lat, lng) {
    if (!cfg || cfg.shift !== "gcj02") return L.latLng(lat, lng);
    var g = wgsToGcj(lng, lat);
    return L.latLng(g[1], g[0]);
  }
  function fromMap(latlng) {
    if (!cfg || cfg.shift !== "gcj02") return {lat: latlng.lat, lng: latlng.lng};
    var w = gcjToWgs(latlng.lng, latlng.lat);
    return {lat: w[1], lng: w[0]};
  }
  // a GeoJSON object's coordinates shifted onto the map (a copy; the input is left alone)
  function geojsonToMap(obj) {
    if (!cfg || cfg.shift !== "gcj02") return obj;
    function walk(c) {
      if (typeof c[0] === "number") { var g = wgsToGcj(c[0], c[1]); return [g[0], g[1]].concat(c.slice(2)); }
      return c.map(walk);
    }
    function geom(g) {
      if (!g) return g;
      if (g.type === "GeometryCollection") return {type: g.type, geometries: g.geometries.map(geom)};
      return {type: g.type, coordinates: walk(g.coordinates)};
    }
    if (obj.type === "FeatureCollection") {
      return Object.assign({}, obj, {features: obj.features.map(function (f) {
        return Object.assign({}, f, {geometry: geom(f.geometry)});
      })});
    }
    if (obj.type === "Feature") return Object.assign({}, obj, {geometry: geom(obj.geometry)});
    return geom(obj);
  }
  // the map's view as W,S,E,N in WGS 84, for the API
  function bbox(map) {
    var b = map.getBounds(), sw = fromMap(b.getSouthWest()), ne = fromMap(b.getNorthEast());
    return [sw.lng, sw.lat, ne.lng, ne.lat].map(function (v) { return v.toFixed(6); }).join(",");
  }
  function fitExtent(map, extent, fallback) {  // (W, S, E, N) in WGS 84
    if (!extent) { map.setView(fallback || [32.05, 118.78], 13); return; }
    map.fitBounds([toMap(extent[1], extent[0]), toMap(extent[3], extent[2])]);
  }

  // ---- vector tiles ------------------------------------------------------------------------------
  function tileUrl(name) {
    var t = cfg.tiles[name];
    return t.url + (cfg.shift ? (t.url.indexOf("?") < 0 ? "?" : "&") + "crs=" + cfg.shift : "");
  }
  function styleOf(name, props, zoom, extra) {
    if (name === "zones") {
      var k = cfg.kind_styles[props.kind] || {};
      return Object.assign({weight: 1, fill: true, fillOpacity: 0.25, color: "#d9480f"}, k, extra || {});
    }
    if (name === "roads") {
      var major = cfg.major_roads.indexOf(props.highway) >= 0;
      return {color: "#868e96", weight: major ? (zoom >= 15 ? 5 : 3) : (zoom >= 15 ? 3 : 1.5), opacity: 0.9};
    }
    if (name === "buildings") return {color: "#5c7cfa", weight: 0.5, fill: true, fillColor: "#bac8ff", fillOpacity: 0.6};
    if (name === "problems") {
      var s = cfg.status_styles[props.status] || {};
      return Object.assign({radius: 5, fill: true, color: "#fff", weight: 1, fillColor: "#e03131", fillOpacity: 0.9},
                           s, {fill: true});
    }
    return {};
  }
  // one tiled layer: `opts.onClick(props, latlng)` makes its features clickable; `opts.style`
  // (props, zoom) → extra style; `opts.pane` where it is drawn
  function vector(name, opts) {
    opts = opts || {};
    var styles = {};
    styles[name] = function (props, zoom) { return styleOf(name, props, zoom, opts.style ? opts.style(props, zoom) : null); };
    var layer = L.vectorGrid.protobuf(tileUrl(name), {
      vectorTileLayerStyles: styles, interactive: !!opts.onClick, minZoom: cfg.tiles[name].min_zoom,
      maxNativeZoom: cfg.max_native_zoom, maxZoom: 21, pane: opts.pane || "overlayPane",
      // clickable layers draw in SVG: each feature is its own element, so a click on the empty
      // part of a tile reaches the layers below (a canvas tile would swallow it)
      rendererFactory: opts.onClick ? L.svg.tile : L.canvas.tile, getFeatureId: function (f) { return f.properties.code || f.properties.problem_id; },
      attribution: cfg.attribution
    });
    if (opts.onClick) {
      layer.on("click", function (e) { opts.onClick(e.layer.properties, e.latlng); });
    }
    layer.zmName = name;
    return layer;
  }

  // ---- basemaps ------------------------------------------------------------------------------------
  function basemaps(map) {
    var out = {}, shown = null;
    cfg.bases.forEach(function (b) {
      var layer = b.url ? L.tileLayer(b.url, {subdomains: b.subdomains || "abc", maxNativeZoom: b.max_native_zoom,
                                              maxZoom: 21, attribution: b.attribution})
        : L.layerGroup();  // "none": our own roads and buildings are the base
      if (b.labels) layer = L.layerGroup([layer, L.tileLayer(b.labels, {subdomains: b.subdomains, maxZoom: 21,
                                                                       maxNativeZoom: b.max_native_zoom})]);
      out[b.label] = layer;
      if (b.id === cfg.base) shown = layer;
    });
    (shown || out[cfg.bases[0].label]).addTo(map);
    return out;
  }

  // the base of every map: the basemap, roads and buildings (from their zooms), a metric scale,
  // the OSM credit; `extent` (W, S, E, N in WGS 84, or null) is fitted first unless the page has
  // set its view (undefined); `onClick(name, props, latlng)` makes roads and buildings clickable. Returns
  // {bases, overlays} for a layer control and {tiled: {roads, buildings}}
  function init(map, config, extent, onClick) {
    cfg = config;
    if (extent !== undefined) fitExtent(map, extent);  // null: the store is empty, a default view
    map.attributionControl.addAttribution(cfg.attribution);
    L.control.scale({imperial: false}).addTo(map);
    var bases = basemaps(map);
    map.createPane("zm-base").style.zIndex = 250;  // our roads and buildings: under the zones (400)
    function click(name) { return onClick ? function (p, ll) { onClick(name, p, ll); } : null; }
    var roads = vector("roads", {pane: "zm-base", onClick: click("roads")});
    var buildings = vector("buildings", {pane: "zm-base", onClick: click("buildings")});
    roads.addTo(map); buildings.addTo(map);
    var overlays = {};
    overlays[cfg.labels.roads] = roads; overlays[cfg.labels.buildings] = buildings;
    return {bases: bases, overlays: overlays, tiled: {roads: roads, buildings: buildings}};
  }

  // "zoom in to see zones" while the view is below a layer's minimum zoom
  function zoomNote(map, box, layers) {
    function say() {
      var z = map.getZoom(), hidden = layers.filter(function (l) {
        return map.hasLayer(l) && z < cfg.tiles[l.zmName].min_zoom;
      });
      box.textContent = hidden.length ? cfg.labels.zoom_in.replace("{layers}", hidden.map(function (l) {
        return cfg.labels[l.zmName];
      }).join("、")) : "";
    }
    map.on("zoomend overlayadd overlayremove", say);
    say();
  }

  // a popup's content: rows of label and text, as text only
  function rows(pairs) {
    var box = document.createElement("div");
    box.className = "zm-popup";
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      var row = document.createElement("div"), k = document.createElement("b"), v = document.createElement("span");
      k.textContent = p[0] + ": "; v.textContent = String(p[1]);
      row.appendChild(k); row.appendChild(v); box.appendChild(row);
    });
    return box;
  }

  return {init: init, vector: vector, zoomNote: zoomNote, rows: rows, toMap: toMap, fromMap: fromMap,
          geojsonToMap: geojsonToMap, bbox: bbox, fitExtent: fitExtent, wgsToGcj: wgsToGcj, gcjToWgs: gcjToWgs,
          config: function () { return cfg; }};
})();
