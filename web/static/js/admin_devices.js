// Device credentials on the administration page (admin only): list, issue (vehicle or gateway
// with sensors and Sparkplug), rotate and revoke. A new secret is shown once, in a dialog with a
// copy button; it is never kept in the page after the dialog closes. DOM built with textContent.
(function () {
  "use strict";
  var t = window.I18N.t;
  var api = window.Api.quiet;
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";
  var $ = function (id) { return document.getElementById(id); };
  var form = $("device-form"), rows = $("device-rows"), dialog = $("device-secret");
  if (!form || !rows) { return; }
  var devices = [];

  var fmt = window.I18N.fmt;
  function fmtTime(iso) {
    if (!iso) { return t("common.none"); }
    return new Intl.DateTimeFormat(window.I18N.lang() === "en" ? "en-GB" : "zh-CN", { timeZone: zone, year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }
  function toast(text, isError) {
    var el = $("toast");
    el.textContent = text;
    el.className = "toast" + (isError ? " error" : "");
    setTimeout(function () { el.className = "toast hidden"; }, 5000);
  }
  function failed(res) {  // the refusal in the page's language when its code is known, else the server's words
    var err = window.Api.error(res), key = "admin.err." + err.code;
    var text = t(key) !== key ? t(key) : window.Api.message(res);
    toast(t("common.error") + ": " + text.split("{sensors}").join((err.sensors || []).join(", ")), true);
  }
  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function button(td, label, action, id) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = t(label);
    b.setAttribute("data-device-action", action);
    b.setAttribute("data-device", id);
    td.appendChild(b);
    td.appendChild(document.createTextNode(" "));
  }

  function render() {
    rows.textContent = "";
    if (!devices.length) {
      var tr = document.createElement("tr");
      cell(tr, t("admin.device.empty")).colSpan = 8;
      rows.appendChild(tr);
      return;
    }
    devices.forEach(function (d) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-device", d.device_id);
      tr.setAttribute("data-active", String(d.active));
      cell(tr, d.device_id);
      cell(tr, t("admin.device.kind." + d.kind));
      var sensors = cell(tr, d.sensors.length > 6 ? d.sensors.slice(0, 6).join(", ") + " … (" + d.sensors.length + ")"
        : d.sensors.join(", ") || t("common.none"));
      sensors.title = d.sensors.join(", ");
      cell(tr, d.sparkplug ? "✔" : "");
      cell(tr, t(d.active ? "admin.device.active" : "admin.device.revoked"));
      cell(tr, fmtTime(d.issued_at));
      cell(tr, d.issued_by || t("common.none"));
      var actions = cell(tr, "");
      if (d.active) {
        button(actions, "admin.device.rotate", "rotate", d.device_id);
        button(actions, "admin.device.revoke", "revoke", d.device_id);
      } else {
        button(actions, "admin.device.issue", "reissue", d.device_id);
      }
      rows.appendChild(tr);
    });
  }
  function load() {
    return api("GET", "/api/admin/devices").then(function (res) {
      if (res.ok) { devices = res.body.devices; render(); $("devices").dataset.loaded = String(Date.now()); }
    });
  }
  function loadVehicles() {  // the fleet registry's ids as suggestions for a vehicle credential
    return api("GET", "/api/admin/vehicles").then(function (res) {
      if (!res.ok) { return; }
      var list = $("device-vehicles");
      list.textContent = "";
      res.body.vehicles.forEach(function (v) {
        var o = document.createElement("option");
        o.value = v.vehicle_id;
        o.textContent = v.plate || "";
        list.appendChild(o);
      });
    });
  }

  // the secret, once ----------------------------------------------------------------------------
  function showSecret(body) {
    $("device-secret-user").textContent = body.username;
    $("device-secret-value").textContent = body.secret;
    $("device-secret-copied").textContent = "";
    if (typeof dialog.showModal === "function") { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
  }
  function closeSecret() {
    $("device-secret-value").textContent = "";
    $("device-secret-user").textContent = "";
    if (typeof dialog.close === "function") { dialog.close(); } else { dialog.removeAttribute("open"); }
  }
  $("device-secret-close").addEventListener("click", closeSecret);
  dialog.addEventListener("close", function () { $("device-secret-value").textContent = ""; });
  $("device-secret-copy").addEventListener("click", function () {
    var secret = $("device-secret-value").textContent, note = $("device-secret-copied");
    function manual() {
      var range = document.createRange();
      range.selectNodeContents($("device-secret-value"));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      note.textContent = t("admin.device.copy_failed");
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(secret).then(function () { note.textContent = t("admin.device.copied"); }, manual);
    } else { manual(); }
  });

  // issue, rotate, revoke -------------------------------------------------------------------------
  function syncKind() {
    var gateway = form.elements.kind.value === "gateway";
    form.querySelectorAll(".gateway-only").forEach(function (el) { el.classList.toggle("hidden", !gateway); });
  }
  form.elements.kind.addEventListener("change", syncKind);
  function issue(body) {
    return api("POST", "/api/admin/devices", body).then(function (res) {
      if (!res.ok) { failed(res); return false; }
      showSecret(res.body);
      load();
      return true;
    });
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = form.elements, body = { kind: f.kind.value, device_id: f.device_id.value.trim() };
    if (body.kind === "gateway") {
      body.sensors = f.sensors.value.split(/[\s,，]+/).filter(function (s) { return s; });
      body.sparkplug = f.sparkplug.checked;
    }
    issue(body).then(function (ok) { if (ok) { form.reset(); syncKind(); } });
  });
  rows.addEventListener("click", function (ev) {
    var action = ev.target.getAttribute("data-device-action"), id = ev.target.getAttribute("data-device");
    if (!action) { return; }
    var path = "/api/admin/devices/" + encodeURIComponent(id) + "/";
    if (action === "reissue") {
      var d = devices.filter(function (x) { return x.device_id === id; })[0];
      issue({ kind: d.kind, device_id: d.device_id, sensors: d.sensors, sparkplug: d.sparkplug });
    } else if (action === "rotate" && window.confirm(fmt("admin.device.confirm_rotate", { id: id }))) {
      api("POST", path + "rotate").then(function (res) {
        if (res.ok) { showSecret(res.body); load(); } else { failed(res); }
      });
    } else if (action === "revoke" && window.confirm(fmt("admin.device.confirm_revoke", { id: id }))) {
      api("POST", path + "revoke").then(function (res) {
        if (res.ok) { toast(fmt("admin.device.done_revoke", { id: id })); load(); } else { failed(res); }
      });
    }
  });
  document.addEventListener("langchange", render);
  syncKind();
  load();
  loadVehicles();
})();
