// The wall's alarm ticker and sensor subsystems (大屏, window.WallZones).
// Ticker: the shown sensor alarms that are not cleared, newest first, coloured by severity, each
// with its time, sensor, kind, reading and limit in the sensor's unit (from the live feed, wall.js).
// Subsystems: the sensors of each kind (pressure, flow, transformer load, any other) read from
// GET /api/sensors every 10 s: how many report, how many are in alarm, the mean of the latest
// readings with the lowest and highest, in the kind's unit, and a sparkline of that mean over the
// last SPARK_POINTS reads (kept in the page: it starts empty on a reload). Under pressure, the
// PART_ROWS DMAs with the lowest pressure (min and mean of their points, a sparkline of the min);
// under transformer load, the PART_ROWS most loaded feeders (highest and mean load, a gauge): the
// points' DMA and the transformers' feeder come from the city's layers (GET /api/layers/
// pressure_points, transformers, dmas), as the center's sensor registry does not carry them.
(function () {
  "use strict";
  var t = window.I18N.t, fmt = window.I18N.fmt;
  var KINDS = ["pressure", "flow", "transformer_load"];  // in this order; any other kind after them
  var SPARK_POINTS = 30, SENSORS_EVERY_MS = 10000, PART_ROWS = 4;
  var history = {}, groups = {}, lastAlarms = null;
  var places = { dma: {}, feeder: {}, dmaName: {} };  // sensor id -> DMA, transformer asset -> feeder

  function node(tag, cls, text) {
    var el = document.createElement(tag);
    if (cls) { el.className = cls; }
    if (text != null) { el.textContent = text; }
    return el;
  }
  function number(value) {
    if (value == null) { return t("common.none"); }
    var abs = Math.abs(value);
    var digits = abs >= 100 ? 1 : abs >= 1 ? 10 : 1000;
    return String(Math.round(value * digits) / digits);
  }
  function kindName(kind) {
    var key = "wall.kind." + kind, text = t(key);
    return text === key ? kind : text;
  }

  // the ticker ---------------------------------------------------------------------------------
  function alarms(shown, sensors, fmtTime) {
    lastAlarms = { shown: shown, sensors: sensors, fmtTime: fmtTime };
    var list = Object.keys(shown).map(function (id) { return shown[id]; })
      .filter(function (a) { return a.state !== "cleared"; })
      .sort(function (a, b) { return (b.raised_at || 0) - (a.raised_at || 0); });
    var ul = document.getElementById("w-ticker");
    ul.textContent = "";
    document.getElementById("w-ticker-count").textContent = fmt("wall.ticker_count", { n: list.length });
    if (!list.length) { ul.appendChild(node("li", "none", t("alarms.none"))); }
    list.slice(0, 40).forEach(function (a) {
      var s = sensors[a.sensor_id] || {}, unit = s.unit ? " " + s.unit : "";
      var li = node("li", "sev-" + (a.severity || "warning") + (a.state === "acknowledged" ? " acked" : ""));
      li.setAttribute("data-alarm-id", a.alarm_id);
      li.setAttribute("data-severity", a.severity || "");
      li.appendChild(node("span", "at", a.raised_at != null ? fmtTime(a.raised_at) : ""));
      li.appendChild(node("span", "sev", t("alarms." + a.severity)));
      li.appendChild(node("span", "what", (s.name || a.sensor_id) + " · " + t("alarms." + a.kind)));
      li.appendChild(node("span", "val", a.value == null ? "" : number(a.value) + unit +
                          (a.threshold == null ? "" : " / " + number(a.threshold) + unit)));
      ul.appendChild(li);
    });
    renderSensors();
  }

  // the subsystems -----------------------------------------------------------------------------
  function loadPlaces() {
    function layer(kind, fn) {
      return window.Api.quiet("GET", "/api/layers/" + kind).then(function (r) {
        ((r.ok && r.body && r.body.features) || []).forEach(function (f) { fn(f.properties || {}); });
      });
    }
    return Promise.all([
      layer("pressure_points", function (p) { if (p.dma_id) { places.dma[p.sensor_id] = String(p.dma_id); } }),
      layer("transformers", function (p) { if (p.feeder) { places.feeder[p.asset_id] = String(p.feeder); } }),
      layer("dmas", function (p) { if (p.name) { places.dmaName[p.dma_id] = String(p.name); } })
    ]);
  }
  function stats(values) {
    var g = { values: values };
    if (values.length) {
      g.min = Math.min.apply(null, values); g.max = Math.max.apply(null, values);
      g.mean = values.reduce(function (a, b) { return a + b; }, 0) / values.length;
    }
    return g;
  }
  function keep(key, value) {
    var h = history[key] || (history[key] = []);
    h.push(value);
    if (h.length > SPARK_POINTS) { h.shift(); }
  }
  // the DMAs of the pressure points, or the feeders of the transformers, that report
  function parts(kind, sensors) {
    var by = {};
    sensors.forEach(function (s) {
      var key = kind === "pressure" ? places.dma[s.id] : kind === "transformer_load" ? places.feeder[s.asset_id] : null;
      if (key && s.reading && s.reading.value != null) { (by[key] = by[key] || []).push(s.reading.value); }
    });
    var list = Object.keys(by).map(function (key) {
      var part = stats(by[key]);
      part.key = key;
      part.name = kind === "pressure" ? places.dmaName[key] || key : key;
      if (kind === "pressure") { keep(kind + ":" + key, part.min); }
      return part;
    });
    return list.sort(function (a, b) { return kind === "pressure" ? a.min - b.min : b.max - a.max; });
  }
  function loadSensors() {
    window.Api.quiet("GET", "/api/sensors").then(function (r) {
      if (!r.ok || !r.body) { return; }
      var byKind = {};
      r.body.sensors.forEach(function (s) { (byKind[s.kind] = byKind[s.kind] || []).push(s); });
      groups = {};
      Object.keys(byKind).forEach(function (kind) {
        var sensors = byKind[kind];
        var g = groups[kind] = stats(sensors.filter(function (s) { return s.reading && s.reading.value != null; })
                                            .map(function (s) { return s.reading.value; }));
        g.unit = sensors[0].unit;
        g.ids = sensors.map(function (s) { return s.id; });
        g.parts = parts(kind, sensors);
        if (g.values.length) { keep(kind, g.mean); }
      });
      renderSensors();
      document.getElementById("w-sensors").dataset.at = String(Date.now());
    });
  }
  function spark(values) {
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    if (values.length > 1) {
      var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values), span = hi - lo || 1;
      var line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", values.map(function (v, i) {
        var y = hi > lo ? 27 - 24 * (v - lo) / span : 15;  // a steady mean is a line across the middle
        return (100 * i / (values.length - 1)).toFixed(1) + "," + y.toFixed(1);
      }).join(" "));
      svg.appendChild(line);
    }
    return svg;
  }
  // the worst DMAs (lowest pressure) or feeders (highest load), a sparkline or a gauge each
  function partList(kind, g) {
    var unit = g.unit ? " " + g.unit : "";
    var box = node("div", "parts");
    box.appendChild(node("h3", null, t("wall.parts." + kind)));
    g.parts.slice(0, PART_ROWS).forEach(function (part) {
      var row = node("div", "part");
      row.setAttribute("data-part", part.key);
      row.appendChild(node("span", "part-name", part.name));
      row.appendChild(node("span", "part-figure", kind === "pressure"
        ? fmt("wall.part_pressure", { min: number(part.min), mean: number(part.mean) }) + unit
        : fmt("wall.part_load", { max: number(part.max), mean: number(part.mean) }) + unit));
      if (kind === "pressure") {
        row.appendChild(spark(history[kind + ":" + part.key] || []));
      } else {
        var gauge = node("span", "gauge"), fill = node("i", part.max >= 100 ? "over" : part.max >= 80 ? "high" : null);
        fill.style.width = Math.max(0, Math.min(100, part.max)) + "%";
        gauge.appendChild(fill);
        row.appendChild(gauge);
      }
      box.appendChild(row);
    });
    return box;
  }
  function renderSensors() {
    var box = document.getElementById("w-sensor-list"), inAlarm = {};
    if (lastAlarms) {
      Object.keys(lastAlarms.shown).forEach(function (id) {
        var a = lastAlarms.shown[id];
        if (a.state !== "cleared") { inAlarm[a.sensor_id] = true; }
      });
    }
    var kinds = KINDS.filter(function (k) { return groups[k]; })
      .concat(Object.keys(groups).filter(function (k) { return KINDS.indexOf(k) < 0; }).sort());
    box.textContent = "";
    kinds.forEach(function (kind) {
      var g = groups[kind], unit = g.unit ? " " + g.unit : "";
      var alarmed = g.ids.filter(function (id) { return inAlarm[id]; }).length;
      var row = node("div", "subsystem" + (alarmed ? " alarmed" : ""));
      row.setAttribute("data-kind", kind);
      var head = node("div", "sub-head");
      head.appendChild(node("span", "sub-name", kindName(kind)));
      head.appendChild(node("span", "sub-count", fmt("wall.sensor_count", { n: g.values.length, all: g.ids.length })));
      head.appendChild(node("span", "sub-alarm", alarmed ? fmt("wall.in_alarm", { n: alarmed }) : t("sensor.ok")));
      row.appendChild(head);
      var figure = node("div", "sub-figure");
      figure.appendChild(node("span", "sub-label", t("wall.mean")));
      figure.appendChild(node("b", "sub-mean", number(g.mean)));
      figure.appendChild(node("span", "sub-unit", g.unit || ""));
      figure.appendChild(node("span", "sub-range", g.values.length ?
        fmt("wall.range", { min: number(g.min) + unit, max: number(g.max) + unit }) : t("wall.no_readings")));
      row.appendChild(figure);
      row.appendChild(spark(history[kind] || []));
      if (g.parts.length) { row.appendChild(partList(kind, g)); }
      box.appendChild(row);
    });
    if (!kinds.length) { box.appendChild(node("p", "none", t("wall.no_sensors"))); }
  }

  document.addEventListener("langchange", function () {
    if (lastAlarms) { alarms(lastAlarms.shown, lastAlarms.sensors, lastAlarms.fmtTime); } else { renderSensors(); }
  });
  loadPlaces().then(loadSensors);
  setInterval(loadSensors, SENSORS_EVERY_MS);
  window.WallZones = { alarms: alarms, loadSensors: loadSensors };
})();
