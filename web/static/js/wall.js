// Wall display (大屏) in zones: live counters from the console feed (/ws/live) and GET
// /api/tickets/counts; today's KPIs (GET /api/wall/kpis, the day's KPI report) refreshed every 10 s.
// The feed's vehicles, tickets and alarms also go to the live map (wall_map.js, window.WallMap)
// and the alarm ticker (wall_zones.js, window.WallZones); the socket reconnects by itself, the
// banner showing while it is down.
(function () {
  "use strict";
  var t = window.I18N.t;
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";
  var STALE_S = Number(document.body.getAttribute("data-stale-s"));  // the server's VEHICLE_STALE_S
  var STATES = ["new", "in_review", "reviewed", "transferred", "assigned", "handling", "declined", "returned", "reopened",
                "dispatched", "accepted", "en_route", "on_site", "resolved", "callback"];  // every open state
  var state = { tickets: {}, alarms: {}, vehicles: {}, sensors: {}, today: null, openTotal: null };
  var MapView = window.WallMap, Zones = window.WallZones;

  function fmtTime(epoch) {
    return new Intl.DateTimeFormat("zh-CN", { timeZone: zone, hour: "2-digit", minute: "2-digit", second: "2-digit",
                                               hour12: false }).format(new Date(epoch * 1000));
  }
  function set(id, value) { document.getElementById(id).textContent = value == null ? t("common.none") : value; }
  function bars(id, counts, keys, prefix) {
    var max = Math.max.apply(null, keys.map(function (k) { return counts[k] || 0; }).concat([1]));
    document.getElementById(id).innerHTML = keys.map(function (k) {
      var n = counts[k] || 0;
      return '<div class="bar" data-bar="' + k + '"><span class="label">' + t(prefix + k) + '</span><span class="fill ' +
             k + '" style="width:' + Math.round(100 * n / max) + '%"></span><b>' + n + "</b></div>";
    }).join("");
  }
  function render() {
    var now = window.I18N.now(), byState = {}, byColor = {}, byUrgency = {}, overdue = 0, open = 0;
    Object.keys(state.tickets).forEach(function (n) {
      var tk = state.tickets[n];
      open += 1;
      byState[tk.state] = (byState[tk.state] || 0) + 1;
      byColor[tk.color] = (byColor[tk.color] || 0) + 1;
      byUrgency[tk.urgency] = (byUrgency[tk.urgency] || 0) + 1;
      if ((tk.queue || []).some(function (q) { return q[1] < now; })) { overdue += 1; }
    });
    var alarms = 0, critical = 0;
    Object.keys(state.alarms).forEach(function (id) {
      var a = state.alarms[id];
      if (a.state === "cleared") { return; }
      alarms += 1;
      if (a.severity === "critical") { critical += 1; }
    });
    var online = 0, all = 0;
    Object.keys(state.vehicles).forEach(function (id) {
      var v = state.vehicles[id];
      all += 1;
      if (v.link !== "offline" && v.t != null && now - v.t <= window.I18N.span(STALE_S)) { online += 1; }
    });
    set("w-open", state.openTotal != null ? Math.max(state.openTotal, open) : open);
    set("w-overdue", overdue);
    set("w-alarms", alarms); set("w-critical", critical);
    set("w-vehicles", online); set("w-vehicles-all", all);
    set("w-created", state.today ? state.today.created : null);
    set("w-resolved", state.today ? state.today.resolved : null);
    bars("w-states", byState, STATES, "tstate.");
    bars("w-colors", byColor, ["red", "orange", "blue"], "color.");
    bars("w-urgency", byUrgency, ["emergency", "urgent", "normal"], "urgency.");
    MapView.tick(state.vehicles, now);
    document.getElementById("wall-clock").textContent = fmtTime(now);
    document.body.dataset.rendered = String(Date.now());
  }

  function vehicle(u) {
    var v = state.vehicles[u.id] || (state.vehicles[u.id] = { id: u.id, link: null, t: null, lat: null, lon: null });
    if (u.fix !== undefined) {
      v.t = u.fix ? u.fix.t : null; v.link = u.link;
      if (u.fix) { v.lat = u.fix.lat; v.lon = u.fix.lon; }
    }
    if (u.t != null) { v.t = u.t; if (v.link === "offline") { v.link = "online"; } }
    if (u.lat != null) { v.lat = u.lat; v.lon = u.lon; }
    if (u.link) { v.link = u.link; }
    MapView.vehicle(v, window.I18N.now());
  }
  function ticket(tk) {
    var held = state.tickets[tk.number];
    if (held && held.version > tk.version) { return; }
    if (tk.open) { state.tickets[tk.number] = tk; } else { delete state.tickets[tk.number]; }
    MapView.ticket(tk);
  }
  function alarm(a) {
    if (a.state === "cleared" && a.acked_at != null) { delete state.alarms[a.alarm_id]; } else { state.alarms[a.alarm_id] = a; }
  }
  function alarmsChanged() {
    MapView.alarms(state.alarms, state.sensors);
    Zones.alarms(state.alarms, state.sensors, fmtTime);
  }
  var countsTimer = null;
  function loadCounts() {
    clearTimeout(countsTimer);
    countsTimer = setTimeout(function () {
      window.Api.quiet("GET", "/api/tickets/counts").then(function (r) {
        if (r.ok && r.body) { state.openTotal = r.body.open; render(); }
      });
    }, 500);
  }

  var lastSeq = null, retry = 500, banner = document.getElementById("banner");
  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live" +
                               (lastSeq != null ? "?since=" + lastSeq : ""));
    socket.onopen = function () { retry = 500; banner.classList.add("hidden"); };
    socket.onmessage = function (ev) {
      var msg = JSON.parse(ev.data);
      if (msg.type === "snapshot") {
        state.tickets = {}; state.alarms = {}; state.vehicles = {}; state.sensors = {};
        MapView.reset();
        (msg.sensors || []).forEach(function (s) { state.sensors[s.id] = s; });
        msg.tickets.forEach(ticket); msg.alarms.forEach(alarm); msg.vehicles.forEach(vehicle);
        alarmsChanged();
        state.today = msg.today || null;
        lastSeq = msg.seq;
      } else if (msg.seq != null) {
        if (lastSeq != null && msg.seq !== lastSeq + 1) {
          if (msg.seq > lastSeq) { socket.send(JSON.stringify({ resume: lastSeq })); }
          return;
        }
        if (msg.type === "vehicles") { msg.vehicles.forEach(vehicle); }
        if (msg.type === "tickets") {
          msg.tickets.forEach(ticket);
          if (msg.today) { state.today = msg.today; }
          loadCounts();
          kpisSoon();  // the KPI row follows the tiles within seconds, not at the next 10 s read
        }
        if (msg.type === "alarms") { msg.alarms.forEach(alarm); alarmsChanged(); }
        lastSeq = msg.seq;
      }
      document.getElementById("w-updated").textContent = fmtTime(window.I18N.now());
    };
    socket.onclose = function () {
      banner.classList.remove("hidden");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  // today's KPIs: each figure with its unit; rates and times note how many tickets they rest on
  var KPI_NOTES = { arrival_min_mean: "arrival_count", arrival_min_p90: "arrival_count",
                    arrive_on_time_pct: "arrive_on_time_due", satisfaction_pct: "callbacks_done",
                    repeat_call_pct: "tickets" };
  var kpis = null;
  function kpiValue(key, value) {
    if (value == null) { return t("common.none"); }
    return kpis.units[key] === "tickets" ? String(value) : (Math.round(value * 10) / 10).toFixed(1);
  }
  function renderKpis() {
    var section = document.getElementById("w-kpis");
    section.querySelectorAll("[data-kpi]").forEach(function (cell) {
      var key = cell.getAttribute("data-kpi"), note = KPI_NOTES[key];
      cell.querySelector(".kpi-value").textContent = kpis ? kpiValue(key, kpis.kpis[key]) : t("common.none");
      cell.querySelector(".kpi-note").textContent = kpis && note ? t("kpi.of").split("{n}").join(kpis.kpis[note]) : "";
    });
    section.dataset.date = kpis ? kpis.date : "";
  }
  function loadKpis() {
    window.Api.quiet("GET", "/api/wall/kpis").then(function (r) {
      var body = r.ok ? r.body : null;
      if (!body) { return; }
      kpis = body;
      renderKpis();
      document.getElementById("w-kpis").dataset.at = String(Date.now());
    });
  }

  document.addEventListener("langchange", function () { render(); renderKpis(); });
  connect();
  var kpisTimer = null;
  function kpisSoon() { clearTimeout(kpisTimer); kpisTimer = setTimeout(loadKpis, 2000); }
  loadKpis();
  setInterval(loadKpis, 10000);
  loadCounts();
  setInterval(render, 1000);
  setInterval(loadCounts, 15000);
})();
