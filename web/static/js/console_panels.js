// Dispatcher console side panels: alarms (acknowledge, sound for critical ones), the ticket queue
// by time left, the crew board, and the ticket detail with timeline, recommendation and actions.
(function () {
  "use strict";
  var C = window.Console, t = C.t, esc = C.esc, api = C.api;
  var canAct = ["dispatcher", "supervisor", "admin"].indexOf(C.role) >= 0;
  var canSupervise = ["supervisor", "admin"].indexOf(C.role) >= 0;  // 督办 (POST /api/tickets/<n>/supervision)
  // a reviewer's queue is the tickets whose review step waits for its role (GET /api/tickets?review_role=)
  var reviewRole = ["team_leader", "coordinator", "director"].indexOf(C.role) >= 0 ? C.role : null;

  // sound: browsers refuse audio before a user gesture, so the context is made on the first click
  var audio = null;
  document.addEventListener("click", function () {
    if (audio || !(window.AudioContext || window.webkitAudioContext)) { return; }
    audio = new (window.AudioContext || window.webkitAudioContext)();
    document.getElementById("sound").classList.remove("hidden");
  }, { capture: true });
  function beep() {
    if (!audio || audio.state !== "running") { return; }
    [0, 0.3].forEach(function (offset) {
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.type = "square"; osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.08, audio.currentTime + offset);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + offset + 0.2);
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(audio.currentTime + offset); osc.stop(audio.currentTime + offset + 0.22);
    });
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  }

  // alarms -------------------------------------------------------------------------------------
  function renderAlarms() {
    var list = Object.keys(C.state.alarms).map(function (id) { return C.state.alarms[id]; });
    list.sort(function (a, b) {
      var ra = (a.state === "raised" ? 2 : 0) + (a.severity === "critical" ? 1 : 0);
      var rb = (b.state === "raised" ? 2 : 0) + (b.severity === "critical" ? 1 : 0);
      return rb - ra || (b.raised_at || 0) - (a.raised_at || 0);
    });
    var active = list.filter(function (a) { return a.state !== "cleared"; }).length;
    document.getElementById("alarm-count").textContent = active;
    var html = list.map(function (a) {
      var sensor = C.state.sensors[a.sensor_id] || {};
      var ack = canAct && a.acked_at == null ? '<button class="ack" data-ack="' + esc(a.alarm_id) + '">' +
                t("alarms.ack") + "</button>" : '<span class="muted">' + (a.acked_by ? t("alarms.acked") + " " + esc(a.acked_by) : "") + "</span>";
      return '<li class="alarm sev-' + a.severity + " st-" + a.state + '" data-alarm-id="' + esc(a.alarm_id) + '">' +
             '<div><b>' + t("alarms." + a.severity) + "</b> " + esc(sensor.name || a.sensor_id) + " · " +
             t("alarms." + a.kind) + " " + (a.value == null ? "" : a.value) + (a.threshold == null ? "" : " / " + a.threshold) +
             (sensor.unit && (a.value != null || a.threshold != null) ? " " + esc(sensor.unit) : "") +
             (a.state === "cleared" ? " · " + t("alarms.cleared") : "") + '</div><div class="row"><span class="muted">' +
             C.fmtTime(a.raised_at, true) + "</span>" + ack + "</div></li>";
    });
    document.getElementById("alarm-list").innerHTML = html.join("") || '<li class="muted">' + t("alarms.none") + "</li>";
  }
  C.on("alarms", function (change) {
    renderAlarms();
    if (!change.snapshot && change.events.some(function (e) {
      return e.severity === "critical" && (e.type === "raised" || e.type === "escalated");
    })) { beep(); }
  });
  document.getElementById("alarm-list").addEventListener("click", function (ev) {
    var id = ev.target.getAttribute && ev.target.getAttribute("data-ack");
    if (!id) { return; }
    ev.target.disabled = true;
    api("POST", "/api/alarms/" + encodeURIComponent(id).replace(/%3A/gi, ":") + "/ack", {}).then(function (res) {
      if (res.ok && res.body && res.body.alarm) {
        C.state.alarms[id] = res.body.alarm;
        renderAlarms();
      } else {
        ev.target.disabled = false;
        C.toast(t("common.error") + " (" + res.status + ")", true);
      }
    });
  });

  // ticket queue ---------------------------------------------------------------------------------
  var queue = [], queueAt = 0, queueTimer = null;
  function leftText(seconds) {
    if (seconds == null) { return t("common.none"); }
    return C.fmt(seconds <= 0 ? "tickets.time_over" : "tickets.time_left", { t: window.I18N.duration(seconds) });
  }
  function renderQueue() {
    var elapsed = window.I18N.now() - queueAt;  // time_left_s is on the center's clock
    document.getElementById("queue-rows").innerHTML = queue.map(function (tk) {
      var left = tk.time_left_s == null ? null : tk.time_left_s - elapsed;
      var level = left != null && left <= 0 ? "overdue" : tk.limit_level || "ok";
      var suggested = tk.police_suggested && !tk.police_kind ?  // an ambiguous emergency: 转110 waits for a dispatcher
        ' <span class="tag police" data-police-suggested="' + esc(tk.police_suggested) + '" title="' +
        esc(t("detail.police_suggested") + " " + t("police.kind." + tk.police_suggested)) + '">110?</span>' : "";
      return '<tr class="q-' + level + '" data-queue="' + esc(tk.number) + '"><td><span class="dot c-' + tk.color +
             '"></span>' + esc(tk.number) + suggested + '<div class="muted">' + t("urgency." + tk.urgency) + " · " +
             t("category." + tk.category) + " · " + esc(tk.address || "") + "</div></td><td>" + t("tstate." + tk.state) +
             '</td><td class="left">' + leftText(left) + "</td></tr>";
    }).join("");
  }
  function loadQueue() {
    clearTimeout(queueTimer);
    queueTimer = setTimeout(function () {
      api("GET", reviewRole ? "/api/tickets?review_role=" + reviewRole + "&limit=100"
        : "/api/tickets?state=open&sort=time_left&limit=100").then(function (res) {
        if (!res.ok) { return; }
        queue = res.body.tickets; queueAt = window.I18N.now();
        document.getElementById("queue-total").textContent = res.body.total;
        renderQueue();
      });
    }, 300);
  }
  document.getElementById("queue-rows").addEventListener("click", function (ev) {
    var row = ev.target.closest("[data-queue]");
    if (row) { openTicket(row.getAttribute("data-queue")); }
  });

  // crew board (GET /api/crews; the admin list of crews and shifts while it is not there) ------------
  var crews = [];
  function crewRows(list) {
    return list.map(function (c) {
      var code = c.status || c.state;
      var status = code ? t("crews.state." + code) : (c.on_shift === false ? t("crews.off_shift") : c.vehicle_state ?
                   t("state." + c.vehicle_state) : t("common.none"));
      var work = c.ticket_number || c.current_ticket || (c.tickets && c.tickets.length ? c.tickets.join(", ") : null) ||
                 (c.workload != null ? String(c.workload) : t("common.none"));
      return '<tr data-crew="' + esc(c.crew_id) + '"><td>' + esc(c.crew_name || c.name || c.crew_id) + '<div class="muted">' +
             esc(c.crew_id) + (c.vehicle_id ? " · " + esc(c.vehicle_id) : "") + "</div></td><td>" + esc(status) +
             "</td><td>" + esc(work) + "</td></tr>";
    }).join("") || '<tr><td colspan="3">' + t("common.none") + "</td></tr>";
  }
  var crewTimer = null;
  function loadCrews() {
    if (!canAct) { return; }
    clearTimeout(crewTimer);
    crewTimer = setTimeout(function () {
      api("GET", C.has("get", "/api/crews") ? "/api/crews" : "/api/admin/crews").then(function (res) {
        if (!res.ok || !res.body) { return; }
        crews = res.body.crews || res.body.board || [];
        document.getElementById("crew-rows").innerHTML = crewRows(crews);
        document.body.dataset.crewsAt = String(Date.now());
      });
    }, 500);
  }

  // ticket detail ----------------------------------------------------------------------------------
  var current = null;  // the ticket shown
  function field(label, value) {
    return '<div class="f"><span class="muted">' + t(label) + "</span> " + esc(value == null || value === "" ? t("common.none") : value) + "</div>";
  }
  function renderDetail(tk) {
    document.getElementById("detail-number").textContent = tk.number;
    document.getElementById("detail").dataset.ticket = tk.number;
    document.getElementById("detail-body").innerHTML =
      '<div class="tags"><span class="tag u-' + tk.urgency + '">' + t("urgency." + tk.urgency) + '</span><span class="tag c-' +
      tk.color + '">' + t("color." + tk.color) + '</span><span class="tag" data-state="' + tk.state + '">' + t("tstate." + tk.state) +
      "</span>" + (tk.police_kind ? '<span class="tag police">110</span>' : "") + "</div>" +
      field("detail.description", tk.description) + field("tickets.address", tk.address) +
      field("detail.caller", (tk.caller_name || "") + " " + (tk.caller_phone || "")) + field("detail.unit", tk.unit_id) +
      field("detail.crew", tk.crew_id) + field("detail.incident", tk.incident_id) + field("detail.calls", tk.calls) +
      field("tickets.left", leftText(tk.time_left_s)) + (tk.review ? field("review.step", tk.review.step + "/" +
      tk.review.of + " " + t("role." + tk.review.role)) : "") + '<div id="detail-supervision" class="supervision"></div>' +
      '<div id="detail-incident" class="incident-panel"></div>';  // console_incident.js
    var acts = tk.allowed_actions || [];
    var html = [];
    if (canAct && acts.indexOf("review") >= 0) { html.push('<button data-do="review">' + t("detail.review") + "</button>"); }
    if (canAct && acts.indexOf("dispatch") >= 0) {
      html.push('<select id="reassign-crew">' + crews.map(function (c) {
        return '<option value="' + esc(c.crew_id) + '">' + esc(c.crew_id + " " + (c.crew_name || c.name || "")) + "</option>";
      }).join("") + '</select><button data-do="reassign">' + t(tk.crew_id ? "detail.reassign" : "detail.assign") + "</button>");
    }
    if (canAct && acts.indexOf("transfer") >= 0) {
      html.push('<input id="transfer-unit" placeholder="' + t("detail.unit") + '" size="8"><button data-do="transfer">' +
                t("detail.transfer") + "</button>");
    }
    // a responsible unit's path: 交办, and the center's decision on a pending 退单 / 延期 request
    var decide = ["assign", "approve_return", "reroute_return", "refuse_return", "approve_extension", "refuse_extension"]
      .filter(function (a) { return acts.indexOf(a) >= 0 && (a === "assign" || (tk.request && a.indexOf(tk.request.kind) > 0)); });
    if (tk.request) {
      html.push('<div class="f" data-request="' + esc(tk.request.kind) + '"><span class="muted">' +
        t("unit.request.pending") + "</span> " + esc(t("unit.request." + tk.request.kind)) + " " +
        (tk.request.until ? C.fmtTime(C.isoEpoch(tk.request.until), true) + " " : "") + "· " + esc(tk.request.reason) + "</div>");
    }
    if (decide.length) {
      html.push('<span class="decide"><input id="decide-note" size="12" maxlength="500" placeholder="' + t("unit.decide.note") + '">' +
        (decide.indexOf("reroute_return") >= 0 ? '<input id="decide-unit" size="8" placeholder="' + t("unit.decide.unit") + '">' : "") +
        decide.map(function (a) { return '<button data-decide="' + a + '">' + t("unit.decide." + a) + "</button>"; }).join("") + "</span>");
    }
    var review = ["approve_review", "send_back_review", "reject_review"].filter(function (a) { return acts.indexOf(a) >= 0; });
    if (review.length) {  // 审核: approve, send back to the agent, reject (不予受理); the note is the reason
      html.push('<span class="review"><input id="review-note" size="14" maxlength="500" placeholder="' + t("review.note") + '">' +
        review.map(function (a) { return '<button data-review="' + a + '">' + t("review." + a) + "</button>"; }).join("") + "</span>");
    }
    if (canAct && C.has("post", "/api/tickets/{}/police")) {  // an ambiguous emergency: 转110 is one confirming click
      html.push(tk.police_suggested && !tk.police_kind && !tk.police_sent ? '<span class="f" data-police-suggested="' + esc(tk.police_suggested) +
        '"><span class="muted">' + t("detail.police_suggested") + "</span> " + esc(t("police.kind." + tk.police_suggested)) +
        ' <button data-do="police" class="danger">' + t("detail.police_confirm") + "</button></span>"
        : '<button data-do="police" class="danger">' + t("detail.police") + "</button>");
    }
    if (canSupervise && ["closed", "cancelled", "merged"].indexOf(tk.state) < 0) {  // 督办: deadline and message
      html.push('<span class="supervise"><select id="supervise-hours" title="' + t("supervision.deadline") + '">' +
        [2, 4, 8, 24, 48, 72].map(function (h) {
          return '<option value="' + h + '"' + (h === 24 ? " selected" : "") + ">" + h + " " + t("supervision.hours") + "</option>";
        }).join("") + '</select><input id="supervise-message" size="14" maxlength="500" placeholder="' +
        t("supervision.message") + '"><button data-do="supervise">' + t("supervision.issue") + "</button></span>");
    }
    document.getElementById("detail-actions").innerHTML = html.join(" ");
  }
  function renderSupervision(list) {  // the ticket's 督办: state, urgings, deadline, holder, answer
    var el = document.getElementById("detail-supervision");
    if (!el) { return; }
    el.innerHTML = (list || []).map(function (s) {
      return '<div class="f" data-supervision="' + esc(s.id) + '" data-state="' + esc(s.state) + '"><span class="muted">' +
        t("supervision.title") + "</span> " + esc(t("supervision.state." + s.state)) + " · " + t("supervision.urgings") + " " +
        esc(s.urgings) + " · " + t("supervision.deadline") + " " + C.fmtTime(C.isoEpoch(s.deadline), true) + " · " +
        esc(s.holder) + (s.escalated_to_unit ? " (" + t("supervision.escalated") + ")" : "") + " · " + esc(s.message) +
        (s.answer ? '<div class="muted small">' + t("supervision.answer") + " " + esc(s.answer) + "</div>" : "") + "</div>";
    }).join("");
  }
  // what a timeline line shows of an event's data: the fields a dispatcher reads, with their labels
  // (the codes — type, route, channel, category — are in the ticket's own fields above)
  var TIMELINE_FIELDS = [["crew_id", "detail.crew"], ["unit_id", "detail.unit"], ["incident_id", "detail.incident"],
                         ["reason", "detail.reason"], ["route_why", "detail.route_why"], ["answer", "detail.result"],
                         ["resolution", "detail.result"]];
  function actionName(action) {
    var key = "unit.action." + action, name = t(key);
    return name === key ? action : name;
  }
  function renderTimeline(events) {
    document.getElementById("detail-timeline").innerHTML = events.map(function (e) {
      var data = e.data || {};
      var extra = TIMELINE_FIELDS.filter(function (f) { return data[f[0]] != null && data[f[0]] !== ""; })
        .map(function (f) { return t(f[1]) + "：" + esc(typeof data[f[0]] === "object" ? JSON.stringify(data[f[0]]) : data[f[0]]); })
        .join(" · ");
      return '<li data-action="' + esc(e.action) + '"><span class="muted">' + C.fmtTime(C.isoEpoch(e.at), true) + "</span> <b>" +
             esc(actionName(e.action)) + "</b> " + (e.to_state ? t("tstate." + e.to_state) : "") + " · " + esc(e.actor_id) +
             (e.note ? " · " + esc(e.note) : "") + (extra ? '<div class="muted small">' + extra + "</div>" : "") + "</li>";
    }).join("");
  }
  function routeLatLngs(route) {
    var g = route && (route.geometry || route.route || route.path || route);
    if (g && g.type === "Feature") { g = g.geometry; }
    var coords = g && g.coordinates ? g.coordinates : Array.isArray(g) ? g : null;
    if (!coords || !coords.length) { return null; }
    return coords.map(function (p) { return Array.isArray(p) ? [p[1], p[0]] : [p.lat, p.lon]; });
  }
  function renderRecommendation(res) {
    var el = document.getElementById("detail-recommend");
    C.routeLayer.clearLayers();
    var list = res.ok && res.body ? (res.body.candidates || res.body.recommendations || res.body.top || []) : null;
    if (!list) { el.textContent = t("common.none"); el.dataset.state = "none"; return; }
    if (!list.length && res.body.primary) {  // a symptom call of an incident: its primary gets the crew
      el.textContent = C.fmt("detail.primary_only", { incident: res.body.incident_id, primary: res.body.primary });
      el.dataset.state = "primary_only"; return;
    }
    if (!list.length) { el.textContent = t("detail.no_recommendation"); el.dataset.state = "empty"; return; }
    var palette = ["#0b7a3e", "#1560bd", "#8e44ad"];
    el.innerHTML = list.slice(0, 3).map(function (c, i) {
      var crew = c.crew_id || (c.crew && c.crew.crew_id);
      var eta = c.eta_s != null ? Math.ceil(c.eta_s / 60) : null;
      var dist = c.distance_m != null ? (c.distance_m / 1000).toFixed(1) : null;
      var line = routeLatLngs(c.route || c.geometry);
      if (line) { L.polyline(line, { color: palette[i], weight: 5 - i, opacity: 0.8 }).addTo(C.routeLayer); }
      return '<div class="cand" data-candidate="' + esc(crew) + '"><span class="swatch" style="background:' + palette[i] + '"></span>' +
             "<b>" + esc(crew) + "</b> " + esc(c.crew_name || "") + " · " + t("detail.eta") + " " +
             (eta == null ? t("common.none") : eta + " " + t("common.min")) + " · " + t("detail.distance") + " " +
             (dist == null ? t("common.none") : dist + " " + t("common.km")) +
             (canAct ? ' <button data-assign="' + esc(crew) + '">' + t("detail.assign") + "</button>" : "") + "</div>";
    }).join("");
    el.dataset.state = "shown";
  }
  function openTicket(number) {
    var panel = document.getElementById("detail");
    panel.classList.remove("hidden");
    panel.dataset.loaded = "";
    return Promise.all([
      api("GET", "/api/tickets/" + number), api("GET", "/api/tickets/" + number + "/timeline"),
      canAct && C.has("get", "/api/tickets/{}/recommendation") ? api("GET", "/api/tickets/" + number + "/recommendation")
        : Promise.resolve({ ok: false }),
      !C.reviewer && C.has("get", "/api/tickets/{}/supervision") ? api("GET", "/api/tickets/" + number + "/supervision")
        : Promise.resolve({ ok: false })
    ]).then(function (all) {
      if (!all[0].ok) { C.toast(t("common.error") + " (" + all[0].status + ")", true); return; }
      current = all[0].body;
      current.police_sent = (all[1].ok ? all[1].body.events : []).some(function (e) {  // 转110 queued: no suggestion
        return ((e.data || {}).data || {}).police === "handover_queued";
      });
      renderDetail(current);
      renderTimeline(all[1].ok ? all[1].body.events : []);
      renderRecommendation(all[2]);
      renderSupervision(all[3].ok ? all[3].body.supervisions : []);
      C.emit("detail", current);  // the incident panel (console_incident.js)
      if (current.lat != null) { C.map.panTo([current.lat, current.lon]); }
      panel.dataset.loaded = current.number + "@" + current.version;
    });
  }
  function after(res, doneKey) {
    if (res.ok) { C.toast(t(doneKey)); }
    else if (res.status === 409) { C.toast(t("common.conflict"), true); }
    else if (res.status === 404 || res.status === 405) { C.toast(t("common.unavailable"), true); }
    else { C.toast(t("common.error") + ": " + (res.body && res.body.error ? res.body.error.message : res.status), true); }
    return openTicket(current.number).then(loadQueue).then(loadCrews);
  }
  function assign(crewId) {
    var body = { crew_id: crewId, expected_version: current.version };
    var url = C.has("post", "/api/tickets/{}/assign") ? "/api/tickets/" + current.number + "/assign"
      : "/api/tickets/" + current.number + "/actions/dispatch";  // the ticket API's own action, without the dispatch service
    return api("POST", url, body).then(function (res) { return after(res, "detail.assigned"); });
  }
  document.getElementById("detail").addEventListener("click", function (ev) {
    var target = ev.target;
    if (!current || target.tagName !== "BUTTON") { return; }
    var crew = target.getAttribute("data-assign"), what = target.getAttribute("data-do");
    if (crew) { target.disabled = true; assign(crew); return; }
    var step = target.getAttribute("data-review");
    if (step) {
      var reason = document.getElementById("review-note").value.trim(), sent = { expected_version: current.version };
      if (step !== "approve_review" && !reason) { C.toast(t("review.reason_needed"), true); return; }
      if (reason) { sent[step === "approve_review" ? "note" : "reason"] = reason; }
      api("POST", "/api/tickets/" + current.number + "/actions/" + step, sent)
        .then(function (res) { return after(res, "review.done"); });
      return;
    }
    var decision = target.getAttribute("data-decide");
    if (decision) {  // 交办 / a decision on the unit's request: the note is the reason, the unit a re-route's
      var body = { expected_version: current.version }, note = document.getElementById("decide-note").value.trim();
      if (note && decision !== "assign") { body.reason = note; }
      if (decision === "reroute_return") { body.unit_id = (document.getElementById("decide-unit").value || "").trim(); }
      api("POST", "/api/tickets/" + current.number + "/actions/" + decision, body)
        .then(function (res) { return after(res, "unit.decide.done"); });
      return;
    }
    if (what === "reassign") { assign(document.getElementById("reassign-crew").value); }
    else if (what === "review") {
      api("POST", "/api/tickets/" + current.number + "/actions/review", { expected_version: current.version })
        .then(function (res) { return after(res, "tstate.reviewed"); });
    } else if (what === "transfer") {
      var unit = document.getElementById("transfer-unit").value.trim();
      if (!unit) { return; }
      api("POST", "/api/tickets/" + current.number + "/actions/transfer",
          { expected_version: current.version, unit_id: unit, reason: "调度转办" })
        .then(function (res) { return after(res, "detail.transferred"); });
    } else if (what === "supervise") {
      var message = document.getElementById("supervise-message").value.trim();
      if (!message) { C.toast(t("supervision.message_needed"), true); return; }
      var hours = Number(document.getElementById("supervise-hours").value);
      api("POST", "/api/tickets/" + current.number + "/supervision",
          { message: message, deadline: new Date((window.I18N.now() + hours * 3600) * 1000).toISOString() })
        .then(function (res) { return after(res, res.status === 200 ? "supervision.urged" : "supervision.issued"); });
    } else if (what === "police") {
      api("POST", "/api/tickets/" + current.number + "/police", { expected_version: current.version })
        .then(function (res) { return after(res, "detail.sent_110"); });
    }
  });
  document.getElementById("detail-close").addEventListener("click", function () {
    document.getElementById("detail").classList.add("hidden");
    C.routeLayer.clearLayers();
    current = null;
  });

  C.on("tickets", function (changed) {
    loadQueue();
    loadCrews();
    if (current && changed.some(function (tk) { return tk.number === current.number && tk.version !== current.version; })) {
      openTicket(current.number);
    }
  });
  C.on("open-ticket", openTicket);
  C.on("beep", beep);  // a newly overdue ticket alarm (console_ticket_alarms.js)
  C.on("lang", function () { renderAlarms(); renderQueue(); loadCrews(); });
  C.openTicket = openTicket;
  setInterval(renderQueue, 1000);
  setInterval(loadQueue, 30000);
  setInterval(loadCrews, 15000);
  C.routesReady.then(loadCrews);
})();
