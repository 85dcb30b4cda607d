// The street base map under every page's map (window.Basemap), as the server configures it: the
// page's <body data-basemap='{"url", "datum", "attribution", "max_zoom", "min_native_zoom",
// "max_native_zoom", "bounds"}'> ({} for none; services/basemap.py; no tile is asked for outside
// "bounds"). Our data is WGS84. On a GCJ-02 base map
// (AMap-style tiles) every point drawn must move by the GCJ-02 offset: the map gets a CRS whose
// projection shifts WGS84 to GCJ-02 before Web Mercator (and back for clicks), so markers, GeoJSON
// layers, lines and map clicks all go through the one function `toGcj02` and stay WGS84 in the
// page's code. The formula is gis/crs.py's (tests/test_browser_basemap.py checks it against it).
(function () {
  "use strict";
  var A = 6378245.0, EE = 0.00669342162296594323, PI = Math.PI;

  function inChina(lon, lat) { return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271; }
  // the GCJ-02 offset [dlon, dlat] in degrees at a WGS84 point (the published formula)
  function delta(lon, lat) {
    var x = lon - 105.0, y = lat - 35.0;
    var common = (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0;
    var dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x)) + common;
    dlat += (20.0 * Math.sin(y * PI) + 40.0 * Math.sin(y / 3.0 * PI)) * 2.0 / 3.0;
    dlat += (160.0 * Math.sin(y / 12.0 * PI) + 320.0 * Math.sin(y * PI / 30.0)) * 2.0 / 3.0;
    var dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x)) + common;
    dlon += (20.0 * Math.sin(x * PI) + 40.0 * Math.sin(x / 3.0 * PI)) * 2.0 / 3.0;
    dlon += (150.0 * Math.sin(x / 12.0 * PI) + 300.0 * Math.sin(x / 30.0 * PI)) * 2.0 / 3.0;
    var radlat = lat / 180.0 * PI, magic = 1.0 - EE * Math.sin(radlat) * Math.sin(radlat), sqrtMagic = Math.sqrt(magic);
    return [(dlon * 180.0) / (A / sqrtMagic * Math.cos(radlat) * PI),
            (dlat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrtMagic) * PI)];
  }
  // WGS84 [lon, lat] to GCJ-02 [lon, lat]; unchanged outside China
  function toGcj02(lon, lat) {
    if (!inChina(lon, lat)) { return [lon, lat]; }
    var d = delta(lon, lat);
    return [lon + d[0], lat + d[1]];
  }
  // GCJ-02 to WGS84, iterating the forward formula to 1e-10 degree (as gis/crs.py does)
  function fromGcj02(lon, lat) {
    if (!inChina(lon, lat)) { return [lon, lat]; }
    var x = lon, y = lat;
    for (var i = 0; i < 30; i += 1) {
      var d = delta(x, y), ex = x + d[0] - lon, ey = y + d[1] - lat;
      x -= ex; y -= ey;
      if (Math.abs(ex) < 1e-10 && Math.abs(ey) < 1e-10) { break; }
    }
    return [x, y];
  }

  function config() {
    try { return JSON.parse(document.body.getAttribute("data-basemap") || "{}") || {}; } catch (e) { return {}; }
  }
  // Web Mercator over GCJ-02: the map's CRS on a GCJ-02 base map
  function gcj02Crs() {
    var mercator = L.Projection.SphericalMercator;
    return L.extend({}, L.CRS.EPSG3857, {
      code: "GCJ02:3857",
      projection: {
        bounds: mercator.bounds,
        project: function (ll) { var g = toGcj02(ll.lng, ll.lat); return mercator.project(L.latLng(g[1], g[0])); },
        unproject: function (p) { var g = mercator.unproject(p), w = fromGcj02(g.lng, g.lat); return L.latLng(w[1], w[0]); }
      }
    });
  }
  // the options of a page's L.map with the CRS the base map needs (and its zoom limit)
  function mapOptions(options) {
    var c = config(), out = L.extend({}, options);
    if (c.datum === "gcj02") { out.crs = gcj02Crs(); }
    if (c.url && c.max_zoom) { out.maxZoom = c.max_zoom; }
    if (c.attribution) { out.attributionControl = true; }
    return out;
  }
  // the tile layer under the map's vector layers; null without a base map
  function addTo(map) {
    var c = config();
    if (!c.url) { return null; }
    var layer = L.tileLayer(c.url, { attribution: c.attribution || "", maxZoom: c.max_zoom || 18,
      minNativeZoom: c.min_native_zoom, maxNativeZoom: c.max_native_zoom, bounds: c.bounds || undefined,
      className: "basemap-tiles" });
    if (map.attributionControl) { map.attributionControl.setPrefix(false); }
    return layer.addTo(map);
  }
  window.Basemap = { config: config, mapOptions: mapOptions, addTo: addTo, toGcj02: toGcj02, fromGcj02: fromGcj02 };
})();
