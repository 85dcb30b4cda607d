// A responsible unit's desk (责任单位工作台): the inbox of its units' open tickets in queue order
// (least share of the time limit left first: GET /api/tickets, scoped by the server), and on the
// ticket chosen the actions the server allows now (allowed_actions): 受理 (unit_accept), 派给本站班组
// (hand_to_crew, a station's own crews), 办理结果反馈 (feedback: text, photos, the leader's
// signature for a complaint), 退单 (request_return) and 延期 (request_extension). A pending
// request is shown until the center decides. The unit's open 督办 (GET /api/supervisions, scoped by
// the server to its units), most urgent first, as their own list with an answer each (POST
// /api/supervisions/<id>/answer: an answered one closes and leaves the list) and on the ticket rows.
// The live feed (/ws/live, the unit's view: its units' tickets) says when one of them changed: the
// inbox is read again then (and the ticket open, if it is the one), a slow poll stays as a fallback.
// Times in the center's zone (data-zone).
(function () {
  "use strict";
  var t = window.I18N.t;
  var api = window.Api.request;
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";
  var crews = JSON.parse(document.body.getAttribute("data-crews") || "[]");
  var SIGNED = { complaint: true };  // the types whose result the unit leader signs (command.tickets.SIGNED_TYPES)
  var $ = function (id) { return document.getElementById(id); };
  var current = null, rows = [], sups = [], supOf = {};  // 督办: the open ones, and by ticket number
  var POLL_MS = 15000, LIVE_POLL_MS = 60000;  // the inbox's poll: without the live feed, and with it
  var asked = 0, shown = 0, lastLoad = 0;  // inbox reads asked and shown (a late older reply is dropped)

  function fmtTime(iso) {
    if (!iso) { return "—"; }
    return new Intl.DateTimeFormat(window.I18N.lang() === "en" ? "en-GB" : "zh-CN", { timeZone: zone,
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }
  function fmtLeft(seconds) {
    if (seconds == null) { return "—"; }
    var text = window.I18N.duration(seconds);
    return seconds < 0 ? t("unit.overdue") + " " + text : text;
  }
  function label(kind, value) { return value ? t("df." + kind + "." + value) : ""; }
  // the ms since the epoch of a wall time "YYYY-MM-DDTHH:MM" in the center's zone
  function zonedEpoch(local) { return window.I18N.zonedEpoch(local, zone); }
  function requestText(req) {
    if (!req) { return ""; }
    return req.kind === "extension" ? t("unit.request.extension") + " " + fmtTime(req.until)
      : t("unit.request.return");
  }
  function say(text, bad, where) {
    var el = $(where || "unit-result");
    el.textContent = text;
    el.classList.toggle("error", !!bad);
  }
  function problem(res) {
    var err = window.Api.error(res);
    return t("unit.err") + " " + (err.message || res.status);
  }

  // 督办 (supervision orders) -----------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text != null) { e.textContent = text; }
    return e;
  }
  function byUrgency(a, b) {  // the earliest deadline first (past ones first of all), then the most urged
    return Date.parse(a.deadline) - Date.parse(b.deadline) || b.urgings - a.urgings || a.id - b.id;
  }
  // deadline (or overdue since), urgings, the unit it was escalated from
  function supLine(s) {
    return t(s.state === "due" ? "unit.sup.due" : "unit.sup.deadline") + " " + fmtTime(s.deadline) +
      (s.urgings ? " · " + t("unit.sup.urgings") + " " + s.urgings : "") +
      (s.escalated_to_unit ? " · " + t("unit.sup.escalated") + " " + s.unit_id : "");
  }
  function supWho(s) { return s.issued_by === "system" ? t("unit.sup.rules") : s.issued_by; }
  function renderSupervisions() {  // rebuilt on every refresh, keeping what the liaison is typing
    var list = $("sup-rows"), typed = {}, active = document.activeElement, focused = null;
    list.querySelectorAll("form[data-answer]").forEach(function (f) {
      typed[f.getAttribute("data-answer")] = f.elements.answer.value;
      if (f.contains(active)) { focused = f.getAttribute("data-answer"); }
    });
    list.textContent = "";
    sups.forEach(function (s) {
      var li = el("li", "sup " + s.state);
      li.setAttribute("data-supervision", s.id);
      li.setAttribute("data-number", s.number);
      li.setAttribute("data-state", s.state);
      var head = el("div", "sup-head"), link = el("a", "", s.number);
      link.href = "#";
      link.setAttribute("data-open", s.number);
      head.appendChild(link);
      head.appendChild(el("span", "sup-when", supLine(s)));
      li.appendChild(head);
      li.appendChild(el("div", "sup-message", s.message + " — " + supWho(s)));
      var form = el("form", "sup-answer"), input = el("input"), button = el("button", "primary", t("unit.sup.answer"));
      form.setAttribute("data-answer", s.id);
      input.name = "answer";
      input.maxLength = 2000;
      input.placeholder = t("unit.sup.answer.hint");
      input.value = typed[s.id] || "";
      button.type = "submit";
      form.appendChild(input);
      form.appendChild(button);
      li.appendChild(form);
      list.appendChild(li);
      if (focused === String(s.id)) { input.focus(); }
    });
    if (!sups.length) { list.appendChild(el("li", "muted", t("unit.sup.empty"))); }
    $("sup-count").textContent = String(sups.length);
  }
  $("sup-rows").addEventListener("click", function (ev) {
    var link = ev.target.closest("[data-open]");
    if (link) { ev.preventDefault(); open(link.getAttribute("data-open")); }
  });
  $("sup-rows").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target, text = form.elements.answer.value.trim(), button = form.querySelector("button");
    if (!text) { say(t("unit.err.answer"), true, "sup-result"); return; }
    button.disabled = true;
    api("POST", "/api/supervisions/" + form.getAttribute("data-answer") + "/answer", { answer: text }).then(function (res) {
      button.disabled = false;
      if (res.ok) { say(t("unit.done.answer"), false, "sup-result"); } else { say(problem(res), true, "sup-result"); }
      return loadInbox().then(function () { if (current) { return open(current.number); } });
    });
  });

  // inbox ---------------------------------------------------------------------------------
  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }
  function leftText(tk) {  // the time left and what it is for (受理, 反馈, ... as command.limit_steps names it)
    var left = fmtLeft(tk.time_left_s);
    return tk.limit_step && tk.time_left_s != null ? t("unit.step." + tk.limit_step) + " · " + left : left;
  }
  function renderInbox() {
    var body = $("inbox-rows");
    body.textContent = "";
    rows.forEach(function (tk) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-number", tk.number);
      tr.setAttribute("data-state", tk.state);
      if (current && current.number === tk.number) { tr.className = "selected"; }
      cell(tr, tk.number);
      cell(tr, label("category", tk.category) + "/" + label("type", tk.type));
      cell(tr, label("state", tk.state));
      cell(tr, leftText(tk)).className = "left " + (tk.limit_level || "");
      cell(tr, requestText(tk.request)).className = "pending";
      var sup = supOf[tk.number];
      cell(tr, sup ? fmtTime(sup.deadline) + (sup.urgings ? " · " + t("unit.sup.urgings") + " " + sup.urgings : "") : "")
        .className = "sup-cell" + (sup ? " " + sup.state : "");
      if (sup) { tr.setAttribute("data-supervision", sup.id); }
      cell(tr, tk.description || "");
      body.appendChild(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      cell(tr, t("unit.inbox.empty")).colSpan = 7;
      body.appendChild(tr);
    }
    $("inbox-count").textContent = String(rows.length);
  }
  function loadInbox() {  // the inbox and the open 督办 together (a row shows its ticket's 督办)
    var mine = ++asked;
    lastLoad = Date.now();
    return Promise.all([api("GET", "/api/tickets?sort=time_left&limit=200"),
      api("GET", "/api/supervisions?state=open&limit=500")]).then(function (all) {
      if (mine < shown) { return; }  // a newer read is on the page already
      shown = mine;
      if (all[1].ok) {
        sups = all[1].body.supervisions.slice().sort(byUrgency);
        supOf = {};
        sups.forEach(function (s) { supOf[s.number] = s; });
        renderSupervisions();
      }
      if (!all[0].ok) { return; }
      rows = all[0].body.tickets;
      renderInbox();
      document.body.dataset.inboxAt = String(Date.now());
    });
  }
  $("inbox-rows").addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr[data-number]");
    if (tr) { open(tr.getAttribute("data-number")); }
  });

  // the ticket chosen ----------------------------------------------------------------------
  function field(dl, key, value) {
    var dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = t(key);
    dd.textContent = value == null || value === "" ? "—" : value;
    dl.appendChild(dt);
    dl.appendChild(dd);
  }
  function show(id, on) { $(id).classList.toggle("hidden", !on); }
  function render(tk) {
    $("detail-number").textContent = tk.number;
    var dl = $("detail-fields");
    dl.textContent = "";
    field(dl, "desk.col.what", label("category", tk.category) + "/" + label("type", tk.type));
    field(dl, "unit.col.state", label("state", tk.state));
    field(dl, "desk.description", tk.description);
    field(dl, "desk.address", tk.address);
    field(dl, "desk.col.caller", (tk.caller_name || "") + " " + (tk.caller_phone || ""));
    field(dl, "unit.col.unit", tk.unit_id);
    field(dl, "unit.col.deadline", fmtTime(tk.deadlines && tk.deadlines.resolve));
    field(dl, "unit.col.left", leftText(tk));
    var sup = supOf[tk.number];
    if (sup) { field(dl, "unit.col.sup", sup.message + " · " + supLine(sup)); }
    if (tk.crew_id) { field(dl, "unit.col.crew", tk.crew_id); }
    if (tk.resolution) { field(dl, "unit.feedback.text", tk.resolution); }
    $("detail-request").textContent = tk.request ? t("unit.request.pending") + " " + requestText(tk.request) +
      " · " + tk.request.reason : "";
    show("detail-request", !!tk.request);
    var acts = tk.allowed_actions || [];
    var can = function (a) { return acts.indexOf(a) >= 0; };
    show("act-accept", can("unit_accept"));
    show("act-crew", can("hand_to_crew") && crews.length > 0);
    show("act-feedback", can("feedback"));
    show("act-return", can("request_return") && !tk.request);
    show("act-extension", can("request_extension") && !tk.request);
    show("signed-row", !!SIGNED[tk.type]);
    var select = $("crew-select");
    select.textContent = "";
    crews.forEach(function (c) {
      var o = document.createElement("option");
      o.value = c.crew_id;
      o.textContent = c.crew_id + " " + (c.crew_name || "");
      select.appendChild(o);
    });
    $("unit-detail").classList.remove("hidden");
    $("unit-detail").dataset.loaded = tk.number + "@" + tk.version;
  }
  function renderTimeline(events) {
    var list = $("detail-timeline");
    list.textContent = "";
    events.forEach(function (e) {
      var li = document.createElement("li");
      li.setAttribute("data-action", e.action);
      li.textContent = fmtTime(e.at) + " " + t("unit.action." + e.action) + " · " + e.actor_id + (e.note ? " · " + e.note : "") +
        (e.data && e.data.reason ? " · " + e.data.reason : "");
      list.appendChild(li);
    });
  }
  function open(number) {
    return Promise.all([api("GET", "/api/tickets/" + number), api("GET", "/api/tickets/" + number + "/timeline")])
      .then(function (all) {
        if (!all[0].ok) { say(problem(all[0]), true); return; }
        var late = current && current.number === number && all[0].body.version < current.version;
        if (late) { return; }  // an older read came back after a newer one
        current = all[0].body;
        render(current);
        renderTimeline(all[1].ok ? all[1].body.events : []);
        renderInbox();
      });
  }
  function act(action, args, done) {
    var body = Object.assign({ expected_version: current.version }, args);
    return api("POST", "/api/tickets/" + current.number + "/actions/" + action, body).then(function (res) {
      if (res.ok) { say(t(done)); } else { say(problem(res), true); }
      return open(current.number).then(loadInbox).then(function () { return res; });
    });
  }

  $("act-accept").addEventListener("click", function (ev) {
    if (ev.target.getAttribute("data-act") === "unit_accept") { act("unit_accept", {}, "unit.done.accept"); }
  });
  $("act-crew").addEventListener("submit", function (ev) {
    ev.preventDefault();
    act("hand_to_crew", { crew_id: $("crew-select").value }, "unit.done.crew");
  });
  $("act-return").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var reason = $("return-reason").value.trim();
    if (!reason) { say(t("unit.err.reason"), true); return; }
    act("request_return", { reason: reason }, "unit.done.return").then(function (res) {
      if (res.ok) { $("return-reason").value = ""; }
    });
  });
  $("act-extension").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var reason = $("extension-reason").value.trim(), until = zonedEpoch($("extension-until").value);
    if (!reason) { say(t("unit.err.reason"), true); return; }
    if (until == null) { say(t("unit.err.until"), true); return; }
    act("request_extension", { reason: reason, until: new Date(until).toISOString() }, "unit.done.extension")
      .then(function (res) { if (res.ok) { $("extension-reason").value = ""; } });
  });
  $("act-feedback").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("feedback-text").value.trim(), signed = $("feedback-signed").value.trim();
    if (!text) { say(t("unit.err.feedback"), true); return; }
    if (SIGNED[current.type] && !signed) { say(t("unit.err.signed"), true); return; }
    var files = Array.prototype.slice.call($("feedback-photos").files || []);
    var uploads = files.map(function (file) {  // each photo first, then the feedback naming them
      return api("POST", "/api/tickets/" + current.number + "/photos", file);
    });
    Promise.all(uploads).then(function (replies) {
      var bad = replies.filter(function (r) { return !r.ok; })[0];
      if (bad) { say(problem(bad), true); return; }
      return api("GET", "/api/tickets/" + current.number).then(function (res) {
        if (res.ok) { current = res.body; }
        var args = { resolution: text, attachments: replies.map(function (r) { return r.body.id; }) };
        if (signed) { args.signed_by = signed; }
        return act("feedback", args, "unit.done.feedback").then(function (done) {
          if (done.ok) { $("feedback-text").value = ""; $("feedback-signed").value = ""; $("feedback-photos").value = ""; }
        });
      });
    });
  });

  document.addEventListener("langchange", function () {
    renderSupervisions();
    renderInbox();
    if (current) { open(current.number); }
  });

  // the live feed: a change of one of the unit's tickets reads the inbox again ----------------------
  var live = { socket: null, seq: null, retry: 500, timer: null };
  function refreshSoon(reopen) {  // one read for a burst of changes
    clearTimeout(live.timer);
    live.timer = setTimeout(function () {
      loadInbox().then(function () { if (reopen && current) { return open(current.number); } });
    }, 250);
  }
  function gone() {  // the ticket open left the unit's hands: no action on it any more
    ["act-accept", "act-crew", "act-feedback", "act-return", "act-extension"]
      .forEach(function (id) { show(id, false); });
    say(t("unit.gone"), true);
    $("unit-detail").dataset.gone = current.number;
    current = null;
  }
  function changed(tickets) {
    if (!tickets.length) { return; }
    var mine = current && tickets.filter(function (tk) { return tk.number === current.number; }).pop();
    if (mine && mine.removed) { gone(); }
    refreshSoon(!!mine && !mine.removed && mine.version !== current.version);
  }
  function connect() {
    var socket = live.socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host +
      "/ws/live" + (live.seq != null ? "?since=" + live.seq : ""));
    socket.onopen = function () { live.retry = 500; document.body.dataset.live = "up"; };
    socket.onmessage = function (ev) {
      var msg = JSON.parse(ev.data);
      if (msg.seq == null || (live.seq != null && msg.seq <= live.seq && msg.type !== "snapshot")) { return; }
      var gap = msg.type !== "snapshot" && live.seq != null && msg.seq !== live.seq + 1;
      live.seq = msg.seq;
      if (msg.type === "snapshot" || gap) { refreshSoon(true); }  // (re)connected, or frames missed: read all again
      else if (msg.type === "tickets") { changed(msg.tickets || []); }
    };
    socket.onclose = function () {
      document.body.dataset.live = "down";
      setTimeout(connect, live.retry);
      live.retry = Math.min(live.retry * 2, 15000);
    };
  }
  loadInbox();
  connect();
  setInterval(function () {  // the fallback: every POLL_MS without the feed, every LIVE_POLL_MS with it
    if (document.body.dataset.live !== "up" || Date.now() - lastLoad >= LIVE_POLL_MS - 1000) { loadInbox(); }
  }, POLL_MS);
})();
