// Report page (报表): daily, weekly, monthly, yearly and custom-range (自定义) KPIs from GET /api/reports/kpi,
// drawn with the vendored Apache ECharts; every count opens the tickets behind it (GET /api/reports/drill).
// The 单位考核 table (GET /api/reports/units, same query) ranks the units; its counts open their tickets
// (GET /api/reports/units/drill).
// Durations are shown in minutes and rates in percent, rounded half up to one decimal like the exports
// (web/report_export.py). The query lives in the URL, so a reload or a shared link shows the same report;
// a range is checked here first (from <= to, at most the API's data-max-range-days) and sent only when valid.
(function () {
  "use strict";
  var t = window.I18N.t;
  var body = document.body;
  var zone = body.getAttribute("data-zone") || "Asia/Shanghai";
  var NAMES = JSON.parse(body.getAttribute("data-names") || "{}");
  var CATEGORIES = ["water", "power", "gas", "heating", "drainage", "sanitation", "other"];
  var STAGES = ["dispatch", "accept", "arrive", "resolve", "callback"];
  var TIMES = ["dispatch_time_s", "acceptance_time_s", "arrival_time_s", "repair_time_s", "resolution_time_s",
               "callback_time_s"];
  var PAGE = 50;
  var MAX_RANGE_DAYS = Number(body.getAttribute("data-max-range-days"));
  var query = { period: "day", date: body.getAttribute("data-today"), from: "", to: "", category: "", district: "",
                unit: "" };
  var last = null, units = null, charts = {}, drill = null, message = null;
  var UNIT_COLS = ["tickets", "accept_rate", "feedback_rate", "return_requests", "returns_approved", "extension_requests",
                   "extensions_approved", "supervisions", "urgings", "escalations", "callbacks", "satisfied_rate",
                   "rework"];
  // a rate's cell opens the tickets judged for it (its late ones are a click further, in the drill list)
  var UNIT_DRILL = { accept_rate: "accept_judged", feedback_rate: "feedback_judged", satisfied_rate: "callbacks" };

  // ------------------------------------------------------------------ formatting
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  var fmt = window.I18N.fmt;
  function minutes(sec) { return sec == null ? null : Math.floor(sec / 60 * 10 + 0.5) / 10; }
  function percent(share) { return share == null ? null : Math.floor(share * 1000 + 0.5) / 10; }
  function show(v) { return v == null ? t("common.none") : String(v); }
  function named(group, id) { var n = (NAMES[group] || {})[id]; return n ? id + " " + n : id; }
  function label(group, id) {
    if (group === "category") { return t("category." + id); }
    if (group === "channel") { return t("reports.channel." + id); }
    return named(group, id);
  }
  function metricLabel(m) {
    var keys = ["reports.metric." + m, "reports.q." + m, "reports.i." + m, "reports.time." + m];
    for (var n = 0; n < keys.length; n += 1) { if (t(keys[n]) !== keys[n]) { return t(keys[n]); } }
    var stage = /^(\w+?)_on_time_(due|met|missed)$/.exec(m);
    if (stage) { return t("reports.stage." + stage[1]) + " · " + t(stage[2] === "missed" ? "reports.col.late" : "reports.col." + stage[2]); }
    return m;
  }
  function localTime(iso) {
    if (!iso) { return t("common.none"); }
    return new Intl.DateTimeFormat("zh-CN", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }
  // a number that opens the tickets behind it
  function link(value, metric, group, key) {
    if (value == null) { return t("common.none"); }
    return '<a class="drill" href="#" data-metric="' + esc(metric) + '"' + (group ? ' data-group="' + esc(group) +
           '" data-key="' + esc(key) + '"' : "") + ">" + esc(value) + "</a>";
  }

  // ------------------------------------------------------------------ days in the center's zone
  function dayNumber(iso) {  // days since 1970-01-01 of a YYYY-MM-DD, NaN when it is not one
    var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || "");
    if (!m) { return NaN; }
    var ms = Date.UTC(+m[1], +m[2] - 1, +m[3]);
    return new Date(ms).toISOString().slice(0, 10) === iso ? ms / 86400000 : NaN;
  }
  function isoDay(year, month, day) {  // month 1-based; day 0 is the last day of the month before
    return new Date(Date.UTC(year, month - 1, day)).toISOString().slice(0, 10);
  }
  function today() { return new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(new Date(window.I18N.now() * 1000)); }
  // quick choices: a calendar quarter as a range, or a year
  function quick(name) {
    var now = today(), year = +now.slice(0, 4), first = Math.floor((+now.slice(5, 7) - 1) / 3) * 3 + 1;
    if (name === "this_year") { return { period: "year", date: now }; }
    if (name === "last_year") { return { period: "year", date: isoDay(year - 1, 1, 1) }; }
    if (name === "last_quarter") { first -= 3; }
    return { period: "range", from: isoDay(year, first, 1), to: isoDay(year, first + 3, 0) };
  }
  // what is wrong with a range (a text for the page), "" when the API would take it
  function rangeProblem(from, to) {
    var a = dayNumber(from), b = dayNumber(to);
    if (isNaN(a) || isNaN(b)) { return t("reports.range_missing"); }
    if (a > b) { return t("reports.range_reversed"); }
    if (b - a + 1 > MAX_RANGE_DAYS) { return fmt("reports.range_too_long", { n: MAX_RANGE_DAYS }); }
    return "";
  }

  // ------------------------------------------------------------------ query and loading
  function params(extra) {
    var q = Object.assign({}, query, extra || {});
    var unused = q.period === "range" ? ["date"] : ["from", "to"];
    return Object.keys(q).filter(function (k) {
      return q[k] !== "" && q[k] != null && unused.indexOf(k) < 0;
    }).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(q[k]);
    }).join("&");
  }
  function toast(text) {
    var el = document.getElementById("toast");
    el.textContent = text;
    el.className = "toast error";
    setTimeout(function () { el.className = "toast hidden"; }, 6000);
  }
  // the page's message line (a function of the language, so the switch redraws it); null hides it
  function showMessage(text) {
    message = text;
    var el = document.getElementById("r-message");
    el.textContent = text ? text() : "";
    el.classList.toggle("hidden", !text);
  }
  // a failed reply, readable: the field it names (in the page's words) and the server's message
  function failure(res) {
    var e = Api.error(res), field = e.field ? t("reports." + e.field) : "";
    var text = Api.message(res);
    if (field === "reports." + e.field) { field = e.field; }  // a field the page has no word for
    if (e.field && text.indexOf(e.field + ": ") === 0) { text = text.slice(e.field.length + 2); }  // named once
    return fmt(field ? "reports.error_field" : "reports.error_plain", { error: t("reports.error"), field: field,
                                                                        message: text });
  }
  function getJson(url) {  // the shared helper (api.js); a failed reply becomes an Error with its message
    return Api.request("GET", url).then(function (res) {
      if (!res.ok) { throw new Error(failure(res)); }
      return res.body;
    });
  }
  function load() {
    var key = params();
    history.replaceState(null, "", "/reports?" + key);
    document.getElementById("r-csv").href = "/api/reports/export?" + params({ format: "csv" });
    document.getElementById("r-xlsx").href = "/api/reports/export?" + params({ format: "xlsx" });
    document.getElementById("drill").classList.add("hidden");  // it showed the tickets of the former query
    body.dataset.loading = key;
    return Api.request("GET", "/api/reports/kpi?" + key).then(function (res) {
      if (body.dataset.loading !== key) { return; }  // a newer query was asked meanwhile
      if (!res.ok) {  // the former report stays, dimmed, under the reason
        body.classList.add("r-stale");
        showMessage(function () { return failure(res); });
        return;
      }
      last = res.body;
      body.classList.remove("r-stale");
      showMessage(null);
      render();
      return loadUnits(key).then(function () { body.dataset.loaded = key; });
    }).catch(function () {
      body.classList.add("r-stale");
      showMessage(function () { return t("reports.error") + ": " + t("reports.offline"); });
    });
  }

  function loadUnits(key) {
    return Api.request("GET", "/api/reports/units?" + key).then(function (res) {
      if (body.dataset.loading !== key) { return; }
      units = res.ok ? res.body : null;
      if (!res.ok) { toast(failure(res)); }
      unitTable();
    });
  }

  // ------------------------------------------------------------------ rendering
  function heading(data) {
    var end = new Date(new Date(data.period.end).getTime() - 1000);
    var endDay = new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(end);
    document.getElementById("r-heading").textContent = fmt("reports.heading", {
      kind: t("reports." + data.period.kind), start: data.period.start.slice(0, 10), end: endDay });
    var f = data.report.filters, parts = [];
    ["category", "district", "unit"].forEach(function (g) {
      if (!f[g]) { return; }
      var values = Array.isArray(f[g]) ? f[g] : [f[g]];
      parts.push(t("reports." + g) + ": " + values.map(function (v) { return label(g, v); }).join(", "));
    });
    document.getElementById("r-filters").textContent = t("reports.filters") + ": " + (parts.length ? parts.join("; ") : t("reports.all"));
  }
  function kpis(r) {
    var v = r.volume, i = r.intake, tm = r.times, o = r.on_time, q = r.quality;
    var tiles = [
      ["reports.k.tickets", v.tickets, "reports.u.tickets", "created"],
      ["reports.k.resolved", v.resolved, "reports.u.tickets", "resolved"],
      ["reports.k.arrival", minutes(tm.arrival_time_s_mean), "reports.u.min", "arrival_time_s"],
      ["reports.k.repair", minutes(tm.repair_time_s_mean), "reports.u.min", "repair_time_s"],
      ["reports.k.resolve_on_time", percent(o.resolve_on_time_rate), "reports.u.pct", "resolve_on_time_due"],
      ["reports.k.ftf", percent(q.first_time_fix_rate), "reports.u.pct", "first_time_fix"],
      ["reports.k.satisfaction", percent(q.satisfaction_rate), "reports.u.pct", "satisfied_or_basically"],
      ["reports.k.callback", percent(q.callback_completion_rate), "reports.u.pct", "callback_done"],
      ["reports.k.reopen", percent(q.reopen_rate), "reports.u.pct", "reopened"],
      ["reports.k.repeat", percent(i.repeat_call_rate), "reports.u.pct", "repeat"],
      ["reports.k.red", percent(i.red_share), "reports.u.pct", "red"],
      ["reports.k.police", i.police_linkage_count, "reports.u.times", "police_handover"]
    ];
    document.getElementById("r-kpis").innerHTML = tiles.map(function (k) {
      return '<div class="r-kpi" data-kpi="' + k[0].split(".").pop() + '"><h3>' + esc(t(k[0])) + '</h3><span class="v">' +
             link(k[1], k[3]) + '</span><span class="u">' + esc(t(k[2])) + "</span></div>";
    }).join("");
  }
  // a table: header keys, rows of HTML cells; the first `text` columns are text, the rest numbers (right-aligned)
  function rows(table, head, lines, text) {
    var k = text == null ? 1 : text;
    var cls = function (n) { return n >= k ? ' class="n"' : ""; };
    document.getElementById(table).innerHTML = "<thead><tr>" + head.map(function (h, n) {
      return "<th" + cls(n) + ">" + esc(t(h)) + "</th>";
    }).join("") + "</tr></thead><tbody>" + lines.map(function (cells) {
      return "<tr>" + cells.map(function (c, n) { return "<td" + cls(n) + ">" + c + "</td>"; }).join("") + "</tr>";
    }).join("") + "</tbody>";
  }
  function tables(r) {
    var i = r.intake, q = r.quality, tm = r.times, o = r.on_time;
    rows("t-intake", ["reports.col.item", "reports.col.value"], [
      "repeat", "duplicate", "red", "orange", "closed_on_call", "open", "transferred", "police_handover", "police_transfer_in",
      "merged", "cancelled"].map(function (m) {
      return [esc(t("reports.i." + m)), link(i[m + "_tickets"], m)];
    }).concat([[esc(t("reports.i.repeat_calls")), esc(i.repeat_calls)],
               [esc(t("reports.i.duplicate_calls")), esc(i.duplicate_calls)],
               [esc(t("reports.i.police_ack")), esc(show(minutes(i.police_ack_s_mean)))]]));
    rows("t-quality", ["reports.col.item", "reports.col.value"], [
      "resolved", "first_time_fix", "reopened", "callback_due", "callback_done", "satisfied", "basically_satisfied",
      "dissatisfied", "unreachable"].map(function (m) { return [esc(t("reports.q." + m)), link(q[m], m)]; }));
    rows("t-times", ["reports.col.stage", "reports.col.count", "reports.col.mean", "reports.col.median", "reports.col.p90"],
      TIMES.map(function (m) {
        return [esc(t("reports.time." + m)), link(tm[m + "_count"], m), esc(show(minutes(tm[m + "_mean"]))),
                esc(show(minutes(tm[m + "_median"]))), esc(show(minutes(tm[m + "_p90"])))];
      }));
    rows("t-ontime", ["reports.col.stage", "reports.col.due", "reports.col.met", "reports.col.rate"], STAGES.map(function (s) {
      return [esc(t("reports.stage." + s)), link(o[s + "_on_time_due"], s + "_on_time_due"),
              link(o[s + "_on_time_met"], s + "_on_time_met"), esc(show(percent(o[s + "_on_time_rate"])))];
    }));
    ranking("t-rank-unit", "unit", r.rankings.unit, r.drill_metrics);
    ranking("t-rank-crew", "crew", r.rankings.crew, r.drill_metrics);
  }
  function ranking(table, group, list, metrics) {
    var cols = ["tickets", "resolved", "arrival_time_s_mean", "repair_time_s_mean", "late_tickets", "first_time_fix",
                "reopened", "callbacks_done", "satisfied"];
    var head = ["reports.col.rank", "reports.col." + group, "reports.col.tickets", "reports.col.resolved",
                "reports.col.arrival", "reports.col.repair", "reports.col.late", "reports.col.ftf", "reports.col.reopened",
                "reports.col.callbacks", "reports.col.satisfied", "reports.col.ontime", "reports.col.sat_rate",
                "reports.col.score"];
    rows(table, head, list.map(function (x) {
      var cells = [esc(x.rank), esc(named(group, x[group + "_id"]))];
      cols.forEach(function (c) {
        var value = /_s_mean$/.test(c) ? minutes(x[c]) : x[c];
        cells.push(link(value, metrics[c], x.drill.group_by, x.drill.group));
      });
      cells.push(esc(show(percent(x.on_time_rate))), esc(show(percent(x.satisfaction_rate))),
                 esc(show(x.score == null ? null : Math.floor(x.score * 10 + 0.5) / 10)));
      return cells;
    }), 2);
  }

  // ------------------------------------------------------------------ charts (Apache ECharts)
  function chart(id) {
    if (!charts[id]) {
      charts[id] = echarts.init(document.getElementById(id), null, { renderer: "canvas" });
      charts[id].on("click", function (p) { if (p.data && p.data.drill) { openDrill(p.data.drill); } });
    }
    return charts[id];
  }
  function bar(id, names, series, yName, extra) {
    var chars = names.reduce(function (sum, n) { return sum + String(n).length; }, 0);
    chart(id).setOption(Object.assign({
      animation: false, tooltip: { trigger: "axis" }, legend: { show: series.length > 1, top: 0 },
      grid: { left: 8, right: 12, top: 30, bottom: 4, containLabel: true },
      xAxis: { type: "category", data: names, axisLabel: { interval: names.length <= 12 ? 0 : "auto",
                                                           rotate: names.length > 8 || chars > 36 ? 35 : 0 } },
      yAxis: { type: "value", name: yName, minInterval: 1 },
      series: series.map(function (s) { return Object.assign({ type: "bar" }, s); })
    }, extra || {}), true);
  }
  function drawCharts(r) {
    var created = t("reports.s.created"), resolved = t("reports.s.resolved"), tickets = t("reports.u.tickets");
    var years = r.series.length && r.series[0].day.slice(0, 4) !== r.series[r.series.length - 1].day.slice(0, 4);
    bar("chart-series", r.series.map(function (d) { return years ? d.day : d.day.slice(5); }), [
      { name: created, data: r.series.map(function (d) { return d.created; }) },
      { name: resolved, data: r.series.map(function (d) { return d.resolved; }) }], tickets);
    bar("chart-hour", r.volume.by_hour.map(function (_, h) { return h + t("reports.u.hour"); }), [
      { name: created, data: r.volume.by_hour.map(function (n, h) {
        return { value: n, drill: { metric: "created", group: "hour", key: h } }; }) }], tickets);
    bar("chart-category", CATEGORIES.map(function (c) { return t("category." + c); }), [
      { name: created, data: CATEGORIES.map(function (c) {
        return { value: r.volume.by_category[c] || 0, drill: { metric: "created", group: "category", key: c } }; }) }], tickets);
    var districts = Object.keys(r.volume.by_district).sort();
    bar("chart-district", districts.map(function (d) { return (NAMES.district || {})[d] || d; }), [
      { name: created, data: districts.map(function (d) {
        return { value: r.volume.by_district[d], drill: { metric: "created", group: "district", key: d } }; }) }], tickets);
    var stages = TIMES.slice(0, 5);
    bar("chart-times", stages.map(function (m) { return t("reports.time." + m); }), ["mean", "median", "p90"].map(function (s) {
      return { name: t("reports.s." + s), data: stages.map(function (m) { return minutes(r.times[m + "_" + s]); }) };
    }), t("reports.u.min"));
    bar("chart-ontime", STAGES.map(function (s) { return t("reports.stage." + s); }), [
      { name: t("reports.col.rate"), data: STAGES.map(function (s) { return percent(r.on_time[s + "_on_time_rate"]); }) }],
      "%", { yAxis: { type: "value", name: "%", max: 100 } });
    body.dataset.charts = String(Object.keys(charts).length);
  }
  // the 单位考核 table: 二级 departments (their stations summed in), then 三级 stations, each ranked
  function unitTable() {
    var list = units ? units.units : [];
    var head = ["reports.ua.level", "reports.ua.rank", "reports.ua.unit", "reports.ua.score"].concat(
      UNIT_COLS.map(function (c) { return "reports.ua." + c; }));
    rows("t-units", head, list.map(function (u) {
      var level = u.level === 2 || u.level === 3 ? "reports.ua.level." + u.level : "reports.ua.level.other";
      var cells = [esc(t(level)), esc(u.rank), esc(u.unit_id + (u.name ? " " + u.name : "")), esc(u.score)];
      UNIT_COLS.forEach(function (c) {
        var value = /_rate$/.test(c) ? show(percent(u[c])) : u[c];
        cells.push('<a class="unit-drill" href="#" data-unit="' + esc(u.unit_id) + '" data-metric="' +
                   esc(UNIT_DRILL[c] || c) + '">' + esc(value) + "</a>");
      });
      return cells;
    }), 3);
    if (!list.length) {
      document.querySelector("#t-units tbody").innerHTML = '<tr><td colspan="' + head.length + '" class="muted">' +
        esc(t("reports.ua.empty")) + "</td></tr>";
    }
    document.getElementById("units").dataset.rows = String(list.length);
  }
  function render() {
    unitTable();
    if (!last) { return; }
    heading(last);
    kpis(last.report);
    drawCharts(last.report);
    tables(last.report);
  }

  // ------------------------------------------------------------------ drill-down
  function openDrill(d) {
    drill = { metric: d.metric, group: d.group || "", key: d.key == null ? "" : String(d.key), unit: d.unit || "",
              offset: 0 };
    loadDrill();
  }
  function loadDrill() {
    var url = drill.unit ? "/api/reports/units/drill?" + params({ unit_id: drill.unit, metric: drill.metric,
                                                                  offset: drill.offset, limit: PAGE })
      : "/api/reports/drill?" + params({ metric: drill.metric, group: drill.group, key: drill.key,
                                         offset: drill.offset, limit: PAGE });
    return getJson(url).then(function (data) {
      var panel = document.getElementById("drill");
      panel.classList.remove("hidden");
      document.getElementById("drill-what").textContent = data.unit_id ? named("unit", data.unit_id) + " · " +
        metricLabel(data.metric) : metricLabel(data.metric) + (data.group ? " · " + label(data.group, String(data.key)) : "");
      document.getElementById("drill-total").textContent = fmt("reports.drill.total", { n: data.total });
      rows("drill-table", ["reports.col.number", "reports.col.created", "reports.col.resolved_at", "reports.col.category",
                           "reports.col.district", "reports.col.unit", "reports.col.crew", "reports.col.state",
                           "reports.col.phone"], data.tickets.map(function (x) {
        return [esc(x.number), esc(localTime(x.created)), esc(localTime(x.resolved)), esc(x.category ? t("category." + x.category) : ""),
                esc(x.district ? named("district", x.district) : ""), esc(x.unit ? named("unit", x.unit) : ""),
                esc(x.crew ? named("crew", x.crew) : ""), esc(x.state ? t("tstate." + x.state) : ""), esc(show(x.phone))];
      }), 9);
      document.getElementById("drill-prev").disabled = data.offset <= 0;
      document.getElementById("drill-next").disabled = data.offset + data.tickets.length >= data.total;
      panel.dataset.loaded = (data.unit_id ? data.unit_id + ":" : "") + data.metric + "|" + (data.group || "") + "|" +
        data.total;
    }).catch(function (err) { toast(t("reports.error") + ": " + err.message); });
  }

  // ------------------------------------------------------------------ controls
  function fillSelect(id, group) {
    var select = document.getElementById(id);
    Object.keys(NAMES[group] || {}).sort().forEach(function (k) {
      var o = document.createElement("option");
      o.value = k;
      o.textContent = named(group, k);
      select.appendChild(o);
    });
  }
  // the tabs, and the date input or the range inputs, as the query says
  function selectTab() {
    document.querySelectorAll(".tabs [data-kind]").forEach(function (b) {
      b.setAttribute("aria-selected", String(b.getAttribute("data-kind") === query.period));
    });
    var ranged = query.period === "range";
    document.getElementById("r-date-label").classList.toggle("hidden", ranged);
    document.getElementById("r-range").classList.toggle("hidden", !ranged);
    document.getElementById("r-date").value = query.date;
    document.getElementById("r-from").value = query.from;
    document.getElementById("r-to").value = query.to;
  }
  // the range of the inputs: loaded when valid, else its message and no request
  function applyRange() {
    var from = document.getElementById("r-from").value, to = document.getElementById("r-to").value;
    var problem = rangeProblem(from, to);
    if (problem) {
      showMessage(function () { return rangeProblem(from, to); });
      return;
    }
    Object.assign(query, { period: "range", from: from, to: to });
    selectTab();
    load();
  }
  function chooseRange() {  // the range tab starts from the period shown (or today)
    if (!query.from || !query.to) {
      var shown = last && last.period, end = shown && new Date(new Date(shown.end).getTime() - 1000);
      query.from = shown ? shown.start.slice(0, 10) : today();
      query.to = shown ? new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(end) : today();
    }
    query.period = "range";
    selectTab();
    applyRange();
  }
  function fromUrl() {
    var p = new URLSearchParams(location.search);
    Object.keys(query).forEach(function (k) { if (p.get(k)) { query[k] = p.get(k); } });
    if (!p.get("period") && (p.get("from") || p.get("to"))) { query.period = "range"; }  // as the API reads it
    ["category", "district", "unit"].forEach(function (k) { document.getElementById("r-" + k).value = query[k]; });
  }
  function wire() {
    document.querySelectorAll(".tabs [data-kind]").forEach(function (b) {
      b.addEventListener("click", function () {
        var kind = b.getAttribute("data-kind");
        if (kind === "range") { chooseRange(); return; }
        query.period = kind;
        selectTab();
        showMessage(null);
        load();
      });
    });
    document.getElementById("r-range").addEventListener("submit", function (ev) { ev.preventDefault(); applyRange(); });
    document.querySelectorAll("[data-quick]").forEach(function (b) {
      b.addEventListener("click", function () {
        Object.assign(query, quick(b.getAttribute("data-quick")));
        selectTab();
        showMessage(null);
        load();
      });
    });
    document.getElementById("r-date").addEventListener("change", function (ev) {
      if (ev.target.value) { query.date = ev.target.value; load(); }
    });
    ["category", "district", "unit"].forEach(function (k) {
      document.getElementById("r-" + k).addEventListener("change", function (ev) { query[k] = ev.target.value; load(); });
    });
    document.getElementById("r-print").addEventListener("click", function () { window.print(); });
    document.addEventListener("click", function (ev) {
      var u = ev.target.closest && ev.target.closest("a.unit-drill");
      if (u) {
        ev.preventDefault();
        openDrill({ unit: u.getAttribute("data-unit"), metric: u.getAttribute("data-metric") });
        return;
      }
      var a = ev.target.closest && ev.target.closest("a.drill");
      if (!a) { return; }
      ev.preventDefault();
      openDrill({ metric: a.getAttribute("data-metric"), group: a.getAttribute("data-group"), key: a.getAttribute("data-key") });
    });
    document.getElementById("drill-close").addEventListener("click", function () {
      document.getElementById("drill").classList.add("hidden");
    });
    document.getElementById("drill-prev").addEventListener("click", function () {
      drill.offset = Math.max(0, drill.offset - PAGE); loadDrill();
    });
    document.getElementById("drill-next").addEventListener("click", function () { drill.offset += PAGE; loadDrill(); });
    var resize = function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); };
    window.addEventListener("resize", resize);
    window.addEventListener("beforeprint", resize);
    window.addEventListener("afterprint", resize);
    if (window.matchMedia) { window.matchMedia("print").addEventListener("change", resize); }
    document.addEventListener("langchange", function () { render(); showMessage(message); });
  }

  fillSelect("r-district", "district");
  fillSelect("r-unit", "unit");
  fromUrl();
  selectTab();
  wire();
  if (query.period === "range") { applyRange(); } else { load(); }
})();
