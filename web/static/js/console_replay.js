// Dispatcher console: track replay (轨迹回放) of one vehicle over the last hours, from
// GET /api/vehicles/<id>/replay: the line (split at gaps), the stops (停留点) with their duration,
// distance and time driven; play / pause at 1x-60x the recorded speed, a slider, following the
// vehicle; the track as GPX or KML. A click on a row of the vehicle table chooses that vehicle.
(function () {
  "use strict";
  var C = window.Console, t = C.t, fmt = C.fmt, esc = C.esc;
  var panel = document.getElementById("replay"), pick = document.getElementById("replay-vehicle");
  var hours = document.getElementById("replay-hours"), speed = document.getElementById("replay-speed");
  var slider = document.getElementById("replay-slider"), summary = document.getElementById("replay-summary");
  var playBtn = document.getElementById("replay-play"), follow = document.getElementById("replay-follow");
  var layer = L.layerGroup().addTo(C.map), marker = null, data = null, at = 0, playing = false, last = null;

  function vehicles() {  // the options: the vehicles the console knows, the chosen one kept
    var chosen = pick.value;
    pick.innerHTML = Object.keys(C.state.vehicles).sort().map(function (id) {
      return '<option value="' + esc(id) + '">' + esc(id) + "</option>";
    }).join("");
    if (chosen) { pick.value = chosen; }
  }
  function index(time) {  // the last drawn point at or before time
    var p = data.points.t, lo = 0, hi = p.length - 1;
    while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (p[mid] <= time) { lo = mid; } else { hi = mid - 1; } }
    return lo;
  }
  function place(time) {  // the vehicle's position at time, between the points around it
    var p = data.points, i = index(time), j = Math.min(i + 1, p.t.length - 1);
    var f = p.t[j] > p.t[i] ? Math.min(Math.max((time - p.t[i]) / (p.t[j] - p.t[i]), 0), 1) : 0;
    return [p.lat[i] + (p.lat[j] - p.lat[i]) * f, p.lon[i] + (p.lon[j] - p.lon[i]) * f, p.speed_kmh[i]];
  }
  function show() {
    if (!data || !data.points.t.length) { return; }
    var where = place(at);
    if (!marker) {
      marker = L.circleMarker([where[0], where[1]], { radius: 8, color: "#b3261e", weight: 3, fillOpacity: 0.9 })
        .addTo(layer);
    }
    marker.setLatLng([where[0], where[1]]);
    if (follow.checked) { C.map.panTo([where[0], where[1]], { animate: false }); }
    slider.value = String(Math.round(at - data.summary.start));
    document.getElementById("replay-time").textContent = C.fmtTime(at, true) +
      (where[2] != null ? " · " + where[2].toFixed(0) + " km/h" : "");
    panel.dataset.at = String(at);
  }
  function frame(stamp) {
    if (!playing) { return; }
    if (last !== null) { at = Math.min(at + (stamp - last) / 1000 * Number(speed.value), data.summary.end); }
    last = stamp;
    show();
    if (at >= data.summary.end) { stop(); return; }
    requestAnimationFrame(frame);
  }
  function stop() { playing = false; last = null; playBtn.textContent = t("replay.play"); }
  function draw(body) {
    layer.clearLayers(); marker = null; data = body;
    var p = body.points, s = body.summary, lines = 0;
    body.segments.forEach(function (seg) {  // (the points' times are rounded to the millisecond)
      var line = [];
      p.t.forEach(function (time, k) {
        if (time >= seg[0] - 0.001 && time <= seg[1] + 0.001) { line.push([p.lat[k], p.lon[k]]); }
      });
      if (line.length > 1) { L.polyline(line, { color: "#1f5fbf", weight: 4, opacity: 0.8 }).addTo(layer); lines += 1; }
    });
    panel.dataset.lines = String(lines);  // (the map draws on a canvas: no element per line to count)
    panel.dataset.stops = String(body.stops.length);
    body.stops.forEach(function (st) {
      L.circleMarker([st.lat, st.lon], { radius: 6, color: "#7a4d00", fillColor: "#f2b233", fillOpacity: 1 })
        .bindTooltip(t("replay.stop") + " " + window.I18N.duration(st.duration_s) + " · " + C.fmtTime(st.start) +
                     "–" + C.fmtTime(st.end)).addTo(layer);
    });
    summary.innerHTML = !p.t.length ? t("replay.none") : esc(fmt("replay.summary", {
      km: (s.distance_m / 1000).toFixed(2), driving: window.I18N.duration(s.driving_s),
      stopped: window.I18N.duration(s.stopped_s), stops: body.stops.length, max: s.max_speed_kmh.toFixed(0) }));
    // the tickets its crew worked on the way (a stop at the ticket's place during its field time)
    worked.innerHTML = (body.tickets || []).map(function (w) {
      return '<li><a href="#" data-worked="' + esc(w.number) + '">' + esc(w.number) + "</a> " +
             esc(t("df.type." + w.type)) + " · " + esc(fmt("replay.on_site", { time: window.I18N.duration(w.on_site_s) })) + "</li>";
    }).join("");
    (body.tickets || []).forEach(function (w) {
      L.circleMarker([w.lat, w.lon], { radius: 8, color: "#b3261e", fill: false, weight: 2 })
        .bindTooltip(w.number).on("click", function () { C.emit("open-ticket", w.number); }).addTo(layer);
    });
    summary.dataset.loaded = String(body.fixes);
    if (!p.t.length) { return; }
    at = s.start; slider.max = String(Math.round(s.end - s.start)); slider.value = "0";
    C.map.fitBounds(L.latLngBounds(p.lat.map(function (la, k) { return [la, p.lon[k]]; })), { maxZoom: 16 });
    show();
  }
  // the period: the last N hours, or a chosen one (datetime-local in the center's zone, back into
  // the archive; at most the API's 7 days); null when the chosen one is not a period
  var custom = document.getElementById("replay-custom"), worked = document.getElementById("replay-tickets");
  worked.addEventListener("click", function (ev) {
    var link = ev.target.closest("[data-worked]");
    if (link) { ev.preventDefault(); C.emit("open-ticket", link.getAttribute("data-worked")); }
  });
  var fromInput = document.getElementById("replay-from"), toInput = document.getElementById("replay-to");
  function period() {
    var now = window.I18N.now();
    if (hours.value !== "custom") { return [now - Number(hours.value) * 3600, now]; }
    var since = window.I18N.zonedEpoch(fromInput.value, C.zone), until = window.I18N.zonedEpoch(toInput.value, C.zone);
    if (since == null || until == null || until <= since || until - since > 7 * 86400e3) { return null; }  // (ms)
    return [since / 1000, until / 1000];
  }
  hours.addEventListener("change", function () {
    var now = window.I18N.now() * 1000;
    if (hours.value === "custom" && !toInput.value) {  // start from the last 24 hours
      toInput.value = window.I18N.zonedInput(now, C.zone);
      fromInput.value = window.I18N.zonedInput(now - 86400000, C.zone);
    }
    custom.classList.toggle("hidden", hours.value !== "custom");
  });
  function load() {
    var id = pick.value;
    if (!id) { return; }
    stop();
    var range = period();
    delete summary.dataset.loaded;
    if (!range) { summary.textContent = t("replay.bad_range"); return; }
    var since = range[0], until = range[1];
    var query = "?since=" + since.toFixed(0) + "&until=" + until.toFixed(0);
    document.getElementById("replay-gpx").href = "/api/vehicles/" + encodeURIComponent(id) + "/replay.gpx" + query;
    document.getElementById("replay-kml").href = "/api/vehicles/" + encodeURIComponent(id) + "/replay.kml" + query;
    summary.textContent = t("replay.loading");
    C.api("GET", "/api/vehicles/" + encodeURIComponent(id) + "/replay" + query + "&points=3000").then(function (res) {
      if (res.ok) { draw(res.body); } else { summary.textContent = (res.body && res.body.error && res.body.error.message) || res.status; }
    });
  }

  C.routesReady.then(function () {
    if (!C.has("get", "/api/vehicles/{}/replay")) { return; }
    panel.classList.remove("hidden");
    vehicles();
    setInterval(vehicles, 10000);
    document.getElementById("replay-load").addEventListener("click", load);
    playBtn.addEventListener("click", function () {
      if (!data || !data.points.t.length) { return; }
      if (playing) { stop(); return; }
      if (at >= data.summary.end) { at = data.summary.start; }
      playing = true; playBtn.textContent = t("replay.pause");
      requestAnimationFrame(frame);
    });
    slider.addEventListener("input", function () { if (data) { at = data.summary.start + Number(slider.value); show(); } });
    document.getElementById("replay-clear").addEventListener("click", function () {
      stop(); layer.clearLayers(); marker = null; data = null; summary.textContent = ""; delete summary.dataset.loaded;
      worked.innerHTML = "";
    });
    document.getElementById("vehicle-rows").addEventListener("click", function (ev) {
      var row = ev.target.closest && ev.target.closest("[data-vehicle-row]");
      if (row) { vehicles(); pick.value = row.getAttribute("data-vehicle-row"); }
    });
    C.on("lang", function () { if (!playing) { playBtn.textContent = t("replay.play"); } if (data) { draw(data); } });
  });
})();
