// Dispatcher console core: the map, base layers, and the live state fed by one WebSocket
// (a snapshot, then ordered deltas of vehicles, tickets and alarms). Panels: console_panels.js.
(function () {
  "use strict";
  var t = window.I18N.t;
  var body = document.body;
  var zone = body.getAttribute("data-zone") || "Asia/Shanghai";
  var role = body.getAttribute("data-role");
  // the review chains' roles open the console for their review queue only (no incidents, hotspots, 督办)
  var reviewer = ["team_leader", "coordinator", "director"].indexOf(role) >= 0;
  // a vehicle's stale and offline limits: the server's VEHICLE_STALE_S and VEHICLE_OFFLINE_S
  // (wall seconds, as the server judges them: on the center's clock they span I18N.span of them)
  var STALE_S = Number(body.getAttribute("data-stale-s")), OFFLINE_S = Number(body.getAttribute("data-offline-s"));
  // the street base map under the layers; on a GCJ-02 one the map's CRS shifts every point (basemap.js)
  var map = L.map("map", window.Basemap.mapOptions({ preferCanvas: true, zoomControl: true, attributionControl: false }))
    .setView([36.38, 119.75], 13);
  window.Basemap.addTo(map);
  var overlays = {};
  var layerControl = L.control.layers(null, null, { collapsed: true }).addTo(map);
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
  // over a street base map the districts are outlines and the roads are the base map's (with their names)
  var DEFAULT_ON = window.Basemap.config().url ? { districts: true } : { districts: true, roads: true };
  if (window.Basemap.config().url) { STYLE.districts = L.extend({}, STYLE.districts, { fillOpacity: 0.04 }); }
  var SKIP_LAYERS = { sensors: true };  // drawn live, coloured by alarm state

  // helpers ----------------------------------------------------------------------------------
  var fmt = window.I18N.fmt;
  function fmtTime(epoch, withDate) {
    if (epoch == null || isNaN(epoch)) { return t("common.none"); }
    var opts = { timeZone: zone, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (withDate) { opts.month = "2-digit"; opts.day = "2-digit"; }
    return new Intl.DateTimeFormat("zh-CN", opts).format(new Date(epoch * 1000));
  }
  function isoEpoch(iso) { return iso ? Date.parse(iso) / 1000 : null; }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  // fetch JSON (api.js); resolves {ok, status, body}, never rejects, so panels degrade quietly
  var api = window.Api.quiet;
  // which optional endpoints this server has (the OpenAPI document lists every real route), so
  // that the console never calls a missing one and shows "—" instead
  var routes = {};
  var routesReady = api("GET", "/api/openapi.json").then(function (res) {
    if (!res.ok || !res.body) { return; }
    Object.keys(res.body.paths).forEach(function (p) {
      routes[p.replace(/\{[^}]+\}/g, "{}")] = Object.keys(res.body.paths[p]);
    });
  });
  function has(method, shape) { return (routes[shape] || []).indexOf(method.toLowerCase()) >= 0; }
  var toastTimer = null;
  function toast(text, isError) {
    var el = document.getElementById("toast");
    el.textContent = text;
    el.className = "toast" + (isError ? " error" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.className = "toast hidden"; }, 4000);
  }
  var listeners = {};
  function on(name, fn) { (listeners[name] = listeners[name] || []).push(fn); }
  function emit(name, arg) { (listeners[name] || []).forEach(function (fn) { fn(arg); }); }

  // base layers --------------------------------------------------------------------------------
  function loadLayers() {
    return api("GET", "/api/layers").then(function (res) {
      if (!res.ok) { return; }
      res.body.layers.forEach(function (info) {
        var kind = info.kind;
        if (SKIP_LAYERS[kind]) { return; }
        var group = L.layerGroup();
        overlays[kind] = group;
        layerControl.addOverlay(group, t("layer." + kind));
        if (DEFAULT_ON[kind]) { group.addTo(map); }
        var load = function () {
          if (group._loaded) { return; }
          group._loaded = true;
          api("GET", "/api/layers/" + kind).then(function (r) {
            if (!r.ok) { group._loaded = false; return; }
            var layer = L.geoJSON(r.body, {
              style: function (f) { return kind === "roads" ? ROAD[f.properties["class"]] || ROAD.local : STYLE[kind] || {}; },
              pointToLayer: function (f, latlng) { return L.circleMarker(latlng, { radius: 3, color: "#555", weight: 1 }); },
              interactive: kind !== "roads" && kind !== "grids"
            });
            group.addLayer(layer);
            if (kind === "districts") { map.fitBounds(layer.getBounds()); }
            var el = document.getElementById("map");
            el.dataset.layers = ((el.dataset.layers ? el.dataset.layers + "," : "") + kind);
          });
        };
        if (DEFAULT_ON[kind]) { load(); }
        group.on("add", load);
      });
    });
  }

  // live state ---------------------------------------------------------------------------------
  var state = { vehicles: {}, tickets: {}, alarms: {}, sensors: {}, crews: {}, today: null };
  var vehicleLayer = L.layerGroup().addTo(map);
  var ticketLayer = L.layerGroup().addTo(map);
  var sensorLayer = L.layerGroup().addTo(map);
  var incidentLayer = L.layerGroup().addTo(map);
  var routeLayer = L.layerGroup().addTo(map);
  var COLORS = { online: "#1560bd", stale: "#d08c2b", offline: "#8a94a0" };

  function vehicleState(d, now) {
    if (d.link === "offline" || !d.fix) { return "offline"; }
    var age = now - d.fix.t;
    return age > window.I18N.span(OFFLINE_S) ? "offline" : age > window.I18N.span(STALE_S) ? "stale" : "online";
  }
  function vehicleLabel(id) {
    var crew = state.crews[id];
    return crew && crew.crew_name ? id + " " + crew.crew_name : id;
  }
  // a JT/T 808 terminal's alarm bits while its reports carry them (the vehicle's signal
  // "alarm:<names>", cleared by a report without): their names, or null
  function vehicleAlarms(d) {
    return d.signal && d.signal.indexOf("alarm:") === 0 ? d.signal.slice(6).split(",") : null;
  }
  function alarmText(names) {
    return t("valarm.title") + ": " + names.map(function (n) {
      var key = "valarm." + n, text = t(key);
      return text === key ? n : text;
    }).join("、");
  }
  function vehicleIcon(vstate, course, label, alarmed) {
    var rot = course == null ? 0 : course;
    var arrow = course == null ? '<circle cx="0" cy="0" r="6"/>' : '<path d="M0,-10 L7,8 L0,4 L-7,8 Z"/>';
    return L.divIcon({ className: "vehicle-icon", iconSize: [20, 20], iconAnchor: [10, 10],
      html: '<svg width="20" height="20" viewBox="-10 -10 20 20"><g transform="rotate(' + rot + ')" fill="' +
            (alarmed ? "#c62828" : COLORS[vstate]) + '" stroke="#fff" stroke-width="1.5">' + arrow + '</g></svg>' +
            '<div class="vehicle-label">' + esc(label) + '</div>' });
  }
  function upsertVehicle(update) {
    var v = state.vehicles[update.id];
    if (!v) { v = state.vehicles[update.id] = { data: { id: update.id }, marker: null }; }
    var d = v.data;
    if (update.fix !== undefined) { d.fix = update.fix; d.link = update.link; d.signal = update.signal || null; }
    if (update.lat != null) {
      d.fix = { t: update.t, lat: update.lat, lon: update.lon, speed_kmh: update.spd, course_deg: update.crs };
      d.signal = update.sig || null;  // a fix clears the signal unless its batch set one, as in the store
      if (d.link === "offline") { d.link = "online"; }
    }
    if (update.link) { d.link = update.link; }
    renderVehicle(v, window.I18N.now());
  }
  function renderVehicle(v, now) {
    var d = v.data, vs = vehicleState(d, now), alarms = vehicleAlarms(d), alarmed = alarms ? alarms.join(",") : "";
    if (!d.fix) { return; }
    var ll = [d.fix.lat, d.fix.lon];
    if (!v.marker) {
      v.marker = L.marker(ll, { icon: vehicleIcon(vs, d.fix.course_deg, vehicleLabel(d.id), alarmed), title: d.id,
                                keyboard: false }).addTo(vehicleLayer);
    } else {
      v.marker.setLatLng(ll);
      if (v.state !== vs || v.course !== d.fix.course_deg || v.alarmed !== alarmed) {
        v.marker.setIcon(vehicleIcon(vs, d.fix.course_deg, vehicleLabel(d.id), alarmed));
      }
    }
    var el = v.marker.getElement();
    if (el) {
      el.setAttribute("data-vehicle", d.id); el.setAttribute("data-state", vs);
      if (alarmed) { el.setAttribute("data-alarm", alarmed); } else { el.removeAttribute("data-alarm"); }
    }
    v.marker.options.title = d.id + " · " + t("state." + vs) + " · " + Math.round(now - d.fix.t) + " s" +
                             (alarms ? " · " + alarmText(alarms) : "");
    v.state = vs; v.course = d.fix.course_deg; v.alarmed = alarmed;
  }

  // tickets: the compact views of open tickets; time left is computed here from the deadlines
  function timeLeft(tk, now) {
    var best = null;
    (tk.queue || []).forEach(function (q) {
      var share = (q[1] - now) / q[2];
      if (best === null || share < best.share) { best = { share: share, stage: q[0], seconds: q[1] - now }; }
    });
    return best;
  }
  function ticketIcon(tk) {
    var left = timeLeft(tk, window.I18N.now());
    var over = left && left.seconds <= 0 ? " overdue" : "";
    return L.divIcon({ className: "ticket-icon", iconSize: [18, 18], iconAnchor: [9, 9],
      html: '<div class="tkt u-' + tk.urgency + " c-" + tk.color + over + '" data-ticket="' + esc(tk.number) +
            '" data-color="' + tk.color + '" data-urgency="' + tk.urgency + '"></div>' });
  }
  function upsertTicket(tk) {
    var held = state.tickets[tk.number];
    if (held && held.data.version > tk.version) { return; }
    if (!tk.open) {
      if (held && held.marker) { ticketLayer.removeLayer(held.marker); }
      delete state.tickets[tk.number];
      return;
    }
    if (!held) { held = state.tickets[tk.number] = { data: tk, marker: null }; }
    held.data = tk;
    if (tk.lat == null || tk.lon == null) { return; }
    if (!held.marker) {
      held.marker = L.marker([tk.lat, tk.lon], { icon: ticketIcon(tk), keyboard: false, zIndexOffset: 500 })
        .addTo(ticketLayer);
      held.marker.on("click", function () { emit("open-ticket", tk.number); });
    } else {
      held.marker.setLatLng([tk.lat, tk.lon]);
      held.marker.setIcon(ticketIcon(tk));
    }
    held.marker.bindTooltip(esc(tk.number) + " · " + t("urgency." + tk.urgency) + " · " + t("tstate." + tk.state) +
                            "<br>" + esc(tk.summary));
  }

  // sensors coloured by their worst shown alarm
  function sensorAlarm(sensorId) {
    var worst = null;
    Object.keys(state.alarms).forEach(function (id) {
      var a = state.alarms[id];
      if (a.sensor_id !== sensorId || a.state === "cleared") { return; }
      var rank = (a.severity === "critical" ? 2 : 1) * (a.state === "acknowledged" ? 1 : 10);
      if (!worst || rank > worst.rank) { worst = { rank: rank, alarm: a }; }
    });
    return worst && worst.alarm;
  }
  function renderSensor(s) {
    if (s.lat == null || s.lon == null) { return; }
    var alarm = sensorAlarm(s.id);
    var cls = alarm ? (alarm.state === "acknowledged" ? "acked-" : "") + alarm.severity : (s.link === "offline" ? "offline" : "ok");
    var icon = L.divIcon({ className: "sensor-icon", iconSize: [12, 12], iconAnchor: [6, 6],
      html: '<div class="sensor s-' + cls + '" data-sensor="' + esc(s.id) + '" data-alarm="' + cls + '"></div>' });
    if (!s.marker) {
      s.marker = L.marker([s.lat, s.lon], { icon: icon, keyboard: false }).addTo(sensorLayer);
    } else if (s.cls !== cls) {
      s.marker.setIcon(icon);
    }
    s.cls = cls;
    s.marker.bindTooltip(esc(s.name || s.id) + " · " + (s.value == null ? t("common.none") : s.value + " " + esc(s.unit || "")) +
                         " · " + (alarm ? t("alarms." + alarm.severity) : t("sensor." + (cls === "offline" ? "offline" : "ok"))));
  }
  function upsertAlarm(a) {
    var gone = a.state === "cleared" && a.acked_at != null;
    if (gone) { delete state.alarms[a.alarm_id]; } else { state.alarms[a.alarm_id] = a; }
    var s = state.sensors[a.sensor_id];
    if (s) { if (a.value != null && a.type !== "acknowledged") { s.value = a.value; } renderSensor(s); }
  }

  // incidents: dashed outlines joining the calls they group
  var incidents = [];
  function drawIncidents() {
    incidentLayer.clearLayers();
    incidents.forEach(function (inc) {
      var pts = inc.ticket_numbers.map(function (n) { return state.tickets[n] && state.tickets[n].data; })
        .filter(function (tk) { return tk && tk.lat != null; }).map(function (tk) { return [tk.lat, tk.lon]; });
      if (pts.length < 2) { return; }
      var layer = pts.length === 2 ? L.polyline(pts, { color: "#7d3c98", weight: 2, dashArray: "6 4" })
        : L.polygon(pts, { color: "#7d3c98", weight: 2, dashArray: "6 4", fillOpacity: 0.08 });
      layer.bindTooltip(t("incident.title") + " " + esc(inc.incident_id) + " · " + inc.calls + " " + t("incident.calls"));
      layer.addTo(incidentLayer);
    });
    document.getElementById("map").dataset.incidents = String(incidentLayer.getLayers().length);
  }
  var incidentTimer = null;
  function loadIncidents() {
    if (reviewer) { return; }
    clearTimeout(incidentTimer);
    incidentTimer = setTimeout(function () {
      api("GET", "/api/incidents").then(function (res) {
        if (res.ok) { incidents = res.body.incidents || []; drawIncidents(); }
      });
    }, 800);
  }

  // the feed -----------------------------------------------------------------------------------
  function applySnapshot(msg) {
    state.crews = msg.crews || {};
    ticketLayer.clearLayers();
    state.tickets = {};
    (msg.tickets || []).forEach(upsertTicket);
    state.alarms = {};
    (msg.alarms || []).forEach(function (a) { state.alarms[a.alarm_id] = a; });
    sensorLayer.clearLayers();
    state.sensors = {};
    (msg.sensors || []).forEach(function (s) { state.sensors[s.id] = s; renderSensor(s); });
    (msg.vehicles || []).forEach(upsertVehicle);
    state.today = msg.today || null;
    renderTable();  // the vehicle table and its counts at once, not at the next periodic render
    emit("snapshot", msg);
    emit("tickets", msg.tickets || []);
    emit("alarms", { events: [], snapshot: true });
    loadIncidents();
  }
  function applyDelta(msg) {
    if (msg.type === "vehicles") { msg.vehicles.forEach(upsertVehicle); }
    else if (msg.type === "tickets") {
      msg.tickets.forEach(upsertTicket);
      if (msg.today) { state.today = msg.today; }
      emit("tickets", msg.tickets);
      loadIncidents();
    } else if (msg.type === "alarms") {
      msg.alarms.forEach(upsertAlarm);
      emit("alarms", { events: msg.alarms, snapshot: false });
    } else if (msg.type === "incidents") {  // an incident's ETR, notice or resolution (console_incident.js)
      loadIncidents();
      emit("incidents", msg.incidents);
    } else if (msg.type === "ticket_alarms") {  // ticket alarms changed (console_ticket_alarms.js reads them)
      emit("ticket_alarms", msg.ticket_alarms);
    } else if (msg.type === "crews") {  // an administrator changed crews or vehicles: relabel at the next render
      state.crews = msg.crews || {};
      Object.keys(state.vehicles).forEach(function (id) { state.vehicles[id].state = null; });
    }
  }
  var lastSeq = null, socket = null, retry = 500;
  var banner = document.getElementById("banner");
  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live" +
              (lastSeq != null ? "?since=" + lastSeq : "");
    socket = new WebSocket(url);
    socket.onopen = function () { retry = 500; banner.classList.add("hidden"); body.dataset.live = "up"; };
    socket.onmessage = function (ev) {
      var msg = JSON.parse(ev.data);
      if (msg.type === "snapshot") {
        applySnapshot(msg);
        lastSeq = msg.seq;
      } else if (msg.seq != null) {
        if (lastSeq != null && msg.seq !== lastSeq + 1) {
          if (msg.seq <= lastSeq) { return; }
          socket.send(JSON.stringify({ resume: lastSeq }));  // a gap: replay, or a fresh snapshot
          return;
        }
        applyDelta(msg);
        lastSeq = msg.seq;
      }
      window.__liveSeq = lastSeq;
    };
    socket.onclose = function () {
      banner.classList.remove("hidden");
      body.dataset.live = "down";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  // periodic: staleness of vehicles, the vehicle table, the clock ----------------------------------
  function renderTable() {
    var now = window.I18N.now(), counts = { online: 0, stale: 0, offline: 0 };
    var rows = Object.keys(state.vehicles).sort().map(function (id) {
      var v = state.vehicles[id], d = v.data, vs = vehicleState(d, now);
      counts[vs] += 1;
      renderVehicle(v, now);
      var crew = state.crews[id];
      var spd = d.fix && d.fix.speed_kmh != null ? d.fix.speed_kmh.toFixed(1) : t("common.none");
      var alarms = vehicleAlarms(d);
      return '<tr class="state-' + vs + (alarms ? " vehicle-alarm" : "") + '" data-vehicle-row="' + esc(id) + '"><td>' +
             esc(id) + " · " + t("state." + vs) + (alarms ? '<div class="valarm">' + esc(alarmText(alarms)) + "</div>" : "") +
             "</td><td>" + esc(crew ? crew.crew_name : t("common.none")) + "</td><td>" + spd + "</td><td>" +
             fmtTime(d.fix ? d.fix.t : null) + "</td></tr>";
    });
    document.getElementById("vehicle-rows").innerHTML = rows.join("");
    Object.keys(counts).forEach(function (k) { document.getElementById("count-" + k).textContent = counts[k]; });
    document.getElementById("clock").textContent = fmtTime(now);
  }

  window.Console = { state: state, map: map, api: api, t: t, fmt: fmt, fmtTime: fmtTime, isoEpoch: isoEpoch,
                     esc: esc, toast: toast, on: on, emit: emit, role: role, reviewer: reviewer, timeLeft: timeLeft, has: has,
                     routesReady: routesReady, zone: zone,
                     routeLayer: routeLayer, renderSensor: renderSensor, layerControl: layerControl,
                     limits: { stale_s: STALE_S, offline_s: OFFLINE_S } };
  document.addEventListener("langchange", function () { renderTable(); emit("lang"); });
  loadLayers();
  connect();
  setInterval(renderTable, 1000);
  setInterval(loadIncidents, 20000);
})();
