// Dispatcher console: the ticket alarms (工单告警) of GET /api/ticket-alarms, raised by the dispatch
// timers and the 110 link: a stage near or past its time limit, a crew's decline or accept
// timeout, no candidate crew, a crew's return, a 110 message not acknowledged. Overdue first;
// a click opens the ticket; a newly overdue alarm beeps (console_panels.js's sound). Read when the
// live feed says they changed (a ticket_alarms frame), a second after each ticket change, and
// every 10 s.
(function () {
  "use strict";
  var C = window.Console, t = C.t, esc = C.esc, api = C.api;
  var panel = document.getElementById("ticket-alarms"), list = document.getElementById("ticket-alarm-list");
  var alarms = null, seen = {}, timer = null;

  function words(a) {  // the server's words are Chinese; in English, built from the alarm's fields
    if (window.I18N.lang() === "zh" || !a.what) { return a.text || a.what; }
    if (a.kind === "limit") { return t("unit.step." + a.step) + ": " + t("talarms." + a.level); }
    return t("talarms.what." + a.what);
  }
  function render() {
    document.getElementById("ticket-alarm-count").textContent = alarms ? alarms.length : 0;
    list.innerHTML = (alarms || []).map(function (a) {
      var when = a.deadline != null ? t("talarms.deadline") + " " + C.fmtTime(a.deadline, true)
        : C.fmtTime(a.raised_at, true);
      return '<li class="alarm talarm lv-' + esc(a.level) + '" data-ticket-alarm="' + esc(a.alarm_id) +
             '" data-number="' + esc(a.number) + '"><div><b>' + t("talarms." + a.level) + "</b> " + esc(a.number) +
             " · " + esc(words(a)) + '</div><div class="row"><span class="muted">' + when + "</span></div></li>";
    }).join("") || '<li class="muted">' + t("talarms.none") + "</li>";
    panel.dataset.loaded = String(Date.now());
  }
  function load() {
    api("GET", "/api/ticket-alarms").then(function (res) {
      if (!res.ok || !res.body) { return; }
      var fresh = res.body.alarms.filter(function (a) { return a.level === "overdue" && !seen[a.alarm_id]; });
      if (alarms !== null && fresh.length) { C.emit("beep"); }
      seen = {};
      res.body.alarms.forEach(function (a) { if (a.level === "overdue") { seen[a.alarm_id] = true; } });
      alarms = res.body.alarms;
      render();
    });
  }
  function soon() { clearTimeout(timer); timer = setTimeout(load, 1000); }

  C.routesReady.then(function () {
    if (!C.has("get", "/api/ticket-alarms") || ["dispatcher", "supervisor", "admin"].indexOf(C.role) < 0) { return; }
    panel.classList.remove("hidden");
    list.addEventListener("click", function (ev) {
      var row = ev.target.closest && ev.target.closest("[data-number]");
      if (row) { C.openTicket(row.getAttribute("data-number")); }
    });
    C.on("tickets", soon);
    C.on("ticket_alarms", load);
    C.on("lang", render);
    load();
    setInterval(load, 10000);
  });
})();
