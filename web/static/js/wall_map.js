// The wall's live map (大屏, window.WallMap): the street base map and the districts' outlines, the
// vehicles (coloured by the age of their fix, as the console), the open tickets (by urgency) and
// the sensors with a shown alarm (by severity), all on one canvas (Leaflet preferCanvas) and
// updated one object at a time as wall.js hands over the live feed's changes.
// The map element's data-vehicles / data-tickets / data-alarms count what is drawn; data-width is
// the screen width it was last redrawn for after a resize.
(function () {
  "use strict";
  var body = document.body;
  // the server's VEHICLE_STALE_S and VEHICLE_OFFLINE_S (wall seconds; I18N.span of them on the center's clock)
  var STALE_S = Number(body.getAttribute("data-stale-s")), OFFLINE_S = Number(body.getAttribute("data-offline-s"));
  var el = document.getElementById("w-map");
  var map = L.map(el, window.Basemap.mapOptions({ preferCanvas: true, zoomControl: false, attributionControl: false,
                                                   keyboard: false, zoomSnap: 0.25, zoomAnimation: false,
                                                   fadeAnimation: false, markerZoomAnimation: false }))
    .setView([36.38, 119.75], 12);  // no animations: a refit is drawn at once
  window.Basemap.addTo(map);
  var street = Boolean(window.Basemap.config().url);
  var VEHICLE = { online: "#3d9bff", stale: "#f0a030", offline: "#8a94a0" };
  var URGENCY = { emergency: "#e0261b", urgent: "#f39c12", normal: "#f5e663" };
  var SEVERITY = { critical: "#ff3b30", warning: "#ffb020" };
  var vehicles = {}, tickets = {}, alarmed = {};
  var ticketLayer = L.layerGroup().addTo(map), alarmLayer = L.layerGroup().addTo(map);
  var vehicleLayer = L.layerGroup().addTo(map);

  // sizes in the page's rem (the root font follows the screen: wall.css), so that markers read
  // from across the room at 1920x1080 and at 3840x2160 alike
  function rem(n) { return n * parseFloat(getComputedStyle(document.documentElement).fontSize); }
  var city = null;
  window.Api.quiet("GET", "/api/layers/districts").then(function (r) {
    if (!r.ok || !r.body) { return; }
    city = L.geoJSON(r.body, { interactive: false, style: { color: "#6fa8dc", weight: rem(0.12), fillColor: "#16324f",
                                                             fillOpacity: street ? 0.05 : 0.6 } });
    city.addTo(map).bringToBack();
    fit();
    el.dataset.districts = String(city.getLayers().length);
  });
  function fit() { if (city) { map.fitBounds(city.getBounds(), { padding: [rem(0.5), rem(0.5)] }); } }

  function count() {
    el.dataset.vehicles = String(vehicleLayer.getLayers().length);
    el.dataset.tickets = String(ticketLayer.getLayers().length);
    el.dataset.alarms = String(alarmLayer.getLayers().length);
  }
  function vehicleState(v, now) {
    if (v.link === "offline" || v.t == null) { return "offline"; }
    var age = now - v.t;
    return age > window.I18N.span(OFFLINE_S) ? "offline" : age > window.I18N.span(STALE_S) ? "stale" : "online";
  }
  // a vehicle as wall.js keeps it ({id, lat, lon, t, link})
  function vehicle(v, now) {
    if (v.lat == null || v.lon == null) { return; }
    var held = vehicles[v.id], vs = vehicleState(v, now);
    if (!held) {
      held = vehicles[v.id] = { marker: L.circleMarker([v.lat, v.lon], { radius: rem(0.45), weight: rem(0.12),
                                                                          color: "#fff", fillOpacity: 1,
                                                                          interactive: false }) };
      held.marker.addTo(vehicleLayer);
      count();
    } else {
      held.marker.setLatLng([v.lat, v.lon]);
    }
    if (held.state !== vs) { held.marker.setStyle({ fillColor: VEHICLE[vs] }); held.state = vs; }
  }
  // a compact ticket: drawn while open and placed
  function ticket(tk) {
    var held = tickets[tk.number];
    if (!tk.open || tk.lat == null || tk.lon == null) {
      if (held) { ticketLayer.removeLayer(held); delete tickets[tk.number]; count(); }
      return;
    }
    var style = { radius: rem(tk.urgency === "emergency" ? 0.5 : 0.38), weight: rem(0.1), color: "#0b1a2b",
                  fillColor: URGENCY[tk.urgency] || URGENCY.normal, fillOpacity: 0.95, interactive: false };
    if (!held) { tickets[tk.number] = L.circleMarker([tk.lat, tk.lon], style).addTo(ticketLayer); count(); }
    else { held.setLatLng([tk.lat, tk.lon]).setStyle(style); }
  }
  // the sensors with a shown alarm (not cleared), ringed by their worst severity
  function alarms(shown, sensors) {
    var worst = {};
    Object.keys(shown).forEach(function (id) {
      var a = shown[id];
      if (a.state === "cleared") { return; }
      if (!worst[a.sensor_id] || a.severity === "critical") { worst[a.sensor_id] = a.severity; }
    });
    Object.keys(alarmed).forEach(function (sid) {
      if (!worst[sid]) { alarmLayer.removeLayer(alarmed[sid]); delete alarmed[sid]; }
    });
    Object.keys(worst).forEach(function (sid) {
      var s = sensors[sid];
      if (!s || s.lat == null || s.lon == null) { return; }
      var style = { radius: rem(0.7), weight: rem(0.25), color: SEVERITY[worst[sid]] || SEVERITY.warning,
                    fillColor: "#fff", fillOpacity: 0.9, interactive: false };
      if (alarmed[sid]) { alarmed[sid].setStyle(style); }
      else { alarmed[sid] = L.circleMarker([s.lat, s.lon], style).addTo(alarmLayer); }
    });
    count();
  }
  // every vehicle's colour again (fixes age without a message)
  function tick(all, now) { Object.keys(all).forEach(function (id) { vehicle(all[id], now); }); }
  function reset() {
    vehicleLayer.clearLayers(); ticketLayer.clearLayers(); alarmLayer.clearLayers();
    vehicles = {}; tickets = {}; alarmed = {};
    count();
  }
  // a new screen size: the map fills its zone again, the city in view, every marker scaled with the text
  var resizeTimer = null, drawnRem = rem(1);
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      var factor = rem(1) / drawnRem;
      drawnRem = rem(1);
      map.invalidateSize({ pan: false });
      fit();
      if (city) { city.setStyle({ weight: rem(0.12) }); }
      [vehicleLayer, ticketLayer, alarmLayer].forEach(function (group) {
        group.eachLayer(function (m) {
          m.setRadius(m.getRadius() * factor).setStyle({ weight: m.options.weight * factor });
        });
      });
      el.dataset.width = String(innerWidth);  // drawn for this screen width
    }, 200);
  });
  count();
  window.WallMap = { vehicle: vehicle, ticket: ticket, alarms: alarms, tick: tick, reset: reset };
})();
