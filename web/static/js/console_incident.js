// Console: the incident of the ticket shown (故障事件) inside the ticket detail: its calls, its
// restoration time (预计恢复时间) and its outage notice (停水/停电通知); a dispatcher or supervisor
// sets the ETR, publishes or changes the notice, and resolves the incident with all its calls.
// It follows the live feed's ``incidents`` frames.
(function () {
  "use strict";
  var C = window.Console, t = C.t, esc = C.esc, api = C.api;
  var canAct = ["dispatcher", "supervisor", "admin"].indexOf(C.role) >= 0;
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";  // the ETR is typed as a wall time there
  var shown = null;  // the incident id shown

  function render(inc) {
    var el = document.getElementById("detail-incident");
    if (!el) { return; }
    el.dataset.incident = inc.incident_id;
    el.dataset.status = inc.status;
    var notice = inc.notice, open = inc.status !== "resolved";
    var html = '<div class="f"><span class="muted">' + t("incident.title") + "</span> <b>" + esc(inc.incident_id) + "</b> · " +
      esc(t("incident.status." + inc.status)) + " · " + esc(inc.calls) + " " + t("incident.calls") + "</div>" +
      '<div class="f" data-area="' + esc(inc.supply_area || "") + '"><span class="muted">' + t("incident.area") + "</span> " +
      esc(inc.area_name || inc.supply_area || "") + (inc.area_name ? ' <small class="muted">' + esc(inc.supply_area) + "</small>" : "") +
      "</div>" +
      '<div class="f" data-etr="' + esc(inc.etr || "") + '"><span class="muted">' + t("incident.etr") + "</span> " +
      (inc.etr ? C.fmtTime(C.isoEpoch(inc.etr), true) + (inc.etr_note ? " · " + esc(inc.etr_note) : "") + " · " + esc(inc.etr_by)
        : t("incident.etr.none")) + "</div>" +
      (notice ? '<div class="f" data-notice="' + esc(notice.state) + '"><span class="muted">' + esc(notice.kind) + t("incident.notice") +
        "</span> " + esc(t("incident.notice." + notice.state)) + " · " + esc(notice.text) + "</div>" : "");
    if (canAct && open) {
      var soon = inc.etr || new Date((window.I18N.now() + 2 * 3600) * 1000).toISOString();
      html += '<div class="incident-act"><input id="etr-at" type="datetime-local" value="' + esc(window.I18N.zonedInput(Date.parse(soon), zone)) + '">' +
        '<input id="etr-note" size="12" maxlength="500" placeholder="' + t("incident.etr.note") + '">' +
        '<button data-incident-do="etr">' + t("incident.etr.set") + "</button></div>" +
        '<div class="incident-act"><input id="notice-area" size="18" maxlength="200" placeholder="' + t("incident.notice.area") +
        '" value="' + esc(notice && notice.active ? notice.area_text : "") + '"><button data-incident-do="notice">' +
        t(notice && notice.active ? "incident.notice.update" : "incident.notice.publish") + "</button></div>" +
        '<div class="incident-act"><input id="incident-resolution" size="18" maxlength="2000" placeholder="' +
        t("incident.resolution") + '"><button data-incident-do="resolve" class="danger">' + t("incident.resolve") + "</button></div>";
    }
    el.innerHTML = html;
  }
  function load(id) {
    shown = id;
    var el = document.getElementById("detail-incident");
    if (!id) { if (el) { el.innerHTML = ""; } return Promise.resolve(); }
    return api("GET", "/api/incidents/" + encodeURIComponent(id)).then(function (res) {
      if (res.ok && shown === id) { render(res.body); }
    });
  }
  function done(res, key) {
    if (res.ok) { C.toast(t(key)); }
    else { C.toast(t("common.error") + ": " + (res.body && res.body.error ? res.body.error.message : res.status), true); }
    return load(shown);
  }
  document.getElementById("detail").addEventListener("click", function (ev) {
    var what = ev.target.getAttribute && ev.target.getAttribute("data-incident-do");
    if (!what || !shown) { return; }
    var url = "/api/incidents/" + encodeURIComponent(shown);
    if (what === "etr") {
      var at = window.I18N.zonedEpoch(document.getElementById("etr-at").value, zone);
      if (at == null) { return; }
      api("POST", url + "/etr", { etr: new Date(at).toISOString(), note: document.getElementById("etr-note").value.trim() })
        .then(function (res) { return done(res, "incident.etr.done"); });
    } else if (what === "notice") {
      var area = document.getElementById("notice-area").value.trim();
      api("POST", url + "/notice", area ? { area_text: area } : {})
        .then(function (res) { return done(res, "incident.notice.done"); });
    } else if (what === "resolve") {
      var resolution = document.getElementById("incident-resolution").value.trim();
      if (!resolution) { C.toast(t("incident.resolution_needed"), true); return; }
      api("POST", url + "/resolve", { resolution: resolution })
        .then(function (res) { return done(res, "incident.resolved"); });
    }
  });
  C.on("detail", function (tk) { load(tk && tk.incident_id); });
  C.on("incidents", function (changes) {  // the live feed: an ETR, a notice or a resolution
    document.body.dataset.incidentsAt = String(Date.now());
    if (shown && (changes || []).some(function (c) { return c.incident_id === shown; })) { load(shown); }
  });
})();
