// Dispatcher console: base layers, live vehicles over one WebSocket (snapshot + ordered deltas).
(function () {
  "use strict";
  var t = window.I18N.t;
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";
  var STALE_S = 30, OFFLINE_S = 300;
  var map = L.map("map", { preferCanvas: true, zoomControl: true, attributionControl: false })
    .setView([36.38, 119.75], 13);
  var overlays = {};
  var layerControl = L.control.layers(null, null, { collapsed: false }).addTo(map);
  var STYLE = {
    districts: { color: "#5b6b7d", weight: 2, fillColor: "#e7ecf2", fillOpacity: 0.5 },
    streets: { color: "#8796a8", weight: 1, dashArray: "4 3", fill: false },
    grids: { color: "#a9b6c4", weight: 0.6, fill: false },
    units: { color: "#3c8d5a", weight: 1.5, fill: false },
    supply_areas: { color: "#d08c2b", weight: 0.8, fillOpacity: 0.05 },
    dmas: { color: "#2b7bd0", weight: 1.2, fillOpacity: 0.06 },
    mains: { color: "#2b7bd0", weight: 1.5 }
  };
  var ROAD = { arterial: { color: "#c9a227", weight: 4 }, collector: { color: "#d9c27a", weight: 2.5 },
               local: { color: "#b9b9b9", weight: 1.2 } };
  var DEFAULT_ON = { districts: true, roads: true };

  function fmtTime(epoch) {
    if (epoch == null) { return "—"; }
    return new Intl.DateTimeFormat("zh-CN", { timeZone: zone, hour: "2-digit", minute: "2-digit",
      second: "2-digit", hour12: false }).format(new Date(epoch * 1000));
  }
  function fetchJSON(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
      if (!r.ok) { throw new Error(url + " -> " + r.status); }
      return r.json();
    });
  }
  function loadLayers() {
    return fetchJSON("/api/layers").then(function (index) {
      index.layers.forEach(function (info) {
        var kind = info.kind;
        var group = L.layerGroup();
        overlays[kind] = group;
        layerControl.addOverlay(group, t("layer." + kind));
        if (DEFAULT_ON[kind]) { group.addTo(map); }
        var load = function () {
          if (group._loaded) { return; }
          group._loaded = true;
          fetchJSON("/api/layers/" + kind).then(function (gj) {
            var layer = L.geoJSON(gj, {
              style: function (f) { return kind === "roads" ? ROAD[f.properties["class"]] || ROAD.local : STYLE[kind] || {}; },
              pointToLayer: function (f, latlng) { return L.circleMarker(latlng, { radius: 3, color: "#555", weight: 1 }); },
              interactive: kind !== "roads" && kind !== "grids"
            });
            group.addLayer(layer);
            if (kind === "districts") { map.fitBounds(layer.getBounds()); }
            var el = document.getElementById("map");
            el.dataset.layers = ((el.dataset.layers ? el.dataset.layers + "," : "") + kind);
          }).catch(function (e) { group._loaded = false; console.warn(e.message); });
        };
        if (DEFAULT_ON[kind]) { load(); }
        group.on("add", load);
      });
    });
  }

  // vehicles -------------------------------------------------------------------------------
  var vehicles = {};  // id -> {data, marker}
  var COLORS = { online: "#1560bd", stale: "#d08c2b", offline: "#8a94a0" };
  function stateOf(v, now) {
    if (v.link === "offline" || !v.fix) { return "offline"; }
    var age = now - v.fix.t;
    return age > OFFLINE_S ? "offline" : age > STALE_S ? "stale" : "online";
  }
  function icon(state, course, label) {
    var rot = course == null ? 0 : course;
    var arrow = course == null ? '<circle cx="0" cy="0" r="6"/>' : '<path d="M0,-10 L7,8 L0,4 L-7,8 Z"/>';
    return L.divIcon({ className: "vehicle-icon", iconSize: [20, 20], iconAnchor: [10, 10],
      html: '<svg width="20" height="20" viewBox="-10 -10 20 20"><g transform="rotate(' + rot + ')" fill="' +
            COLORS[state] + '" stroke="#fff" stroke-width="1.5">' + arrow + '</g></svg>' +
            '<div class="vehicle-label">' + label + '</div>' });
  }
  function upsert(update) {
    var v = vehicles[update.id];
    if (!v) { v = vehicles[update.id] = { data: { id: update.id }, marker: null }; }
    var d = v.data;
    if (update.fix !== undefined) { d.fix = update.fix; d.link = update.link; }
    if (update.lat != null) {
      d.fix = { t: update.t, lat: update.lat, lon: update.lon, speed_kmh: update.spd, course_deg: update.crs };
      if (d.link === "offline") { d.link = "online"; }
    }
    if (update.link) { d.link = update.link; }
    render(v, Date.now() / 1000);
  }
  function render(v, now) {
    var d = v.data, state = stateOf(d, now);
    if (!d.fix) { return; }
    var ll = [d.fix.lat, d.fix.lon];
    if (!v.marker) {
      v.marker = L.marker(ll, { icon: icon(state, d.fix.course_deg, d.id), title: d.id, keyboard: false }).addTo(map);
      v.marker.getElement && v.marker.getElement() && v.marker.getElement().setAttribute("data-vehicle", d.id);
    } else {
      v.marker.setLatLng(ll);
      if (v.state !== state || v.course !== d.fix.course_deg) { v.marker.setIcon(icon(state, d.fix.course_deg, d.id)); }
      var el = v.marker.getElement();
      if (el) { el.setAttribute("data-vehicle", d.id); }
    }
    v.state = state; v.course = d.fix.course_deg;
  }
  function renderTable() {
    var now = Date.now() / 1000, counts = { online: 0, stale: 0, offline: 0 };
    var ids = Object.keys(vehicles).sort();
    var rows = ids.map(function (id) {
      var v = vehicles[id], d = v.data, state = stateOf(d, now);
      counts[state] += 1;
      render(v, now);
      var spd = d.fix && d.fix.speed_kmh != null ? d.fix.speed_kmh.toFixed(1) : "—";
      return '<tr class="state-' + state + '" data-vehicle-row="' + id + '"><td>' + id + " · " + t("state." + state) +
             "</td><td>" + spd + "</td><td>" + fmtTime(d.fix ? d.fix.t : null) + "</td></tr>";
    });
    document.getElementById("vehicle-rows").innerHTML = rows.join("");
    Object.keys(counts).forEach(function (k) { document.getElementById("count-" + k).textContent = counts[k]; });
    document.getElementById("clock").textContent = fmtTime(now);
  }

  // live feed ------------------------------------------------------------------------------
  var lastSeq = null, socket = null, retry = 500;
  var banner = document.getElementById("banner");
  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live" +
              (lastSeq != null ? "?since=" + lastSeq : "");
    socket = new WebSocket(url);
    socket.onopen = function () { retry = 500; banner.classList.add("hidden"); };
    socket.onmessage = function (ev) {
      var msg = JSON.parse(ev.data);
      if (msg.type === "snapshot") {
        msg.vehicles.forEach(upsert);
        lastSeq = msg.seq;
      } else if (msg.type === "vehicles") {
        if (lastSeq != null && msg.seq !== lastSeq + 1) {
          if (msg.seq <= lastSeq) { return; }
          socket.send(JSON.stringify({ resume: lastSeq }));
          return;
        }
        msg.vehicles.forEach(upsert);
        lastSeq = msg.seq;
      }
      window.__liveSeq = lastSeq;
    };
    socket.onclose = function () {
      banner.classList.remove("hidden");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  document.addEventListener("langchange", function () { renderTable(); });
  loadLayers().catch(function (e) { console.warn(e.message); });
  connect();
  setInterval(renderTable, 1000);
})();
