// Administration page: users (create, change role, disable, reset password) and crew shifts.
(function () {
  "use strict";
  var t = window.I18N.t;
  var isAdmin = document.body.getAttribute("data-role") === "admin";
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function fmt(key, params) {
    var s = t(key);
    Object.keys(params).forEach(function (k) { s = s.split("{" + k + "}").join(params[k]); });
    return s;
  }
  function xsrf() {
    var m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function api(method, url, payload) {
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") {
      init.headers["X-XSRFToken"] = xsrf();
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload || {});
    }
    return fetch(url, init).then(function (r) {
      return r.json().then(function (b) { return { ok: r.ok, status: r.status, body: b }; },
                           function () { return { ok: r.ok, status: r.status, body: null }; });
    });
  }
  function toast(text, isError) {
    var el = document.getElementById("toast");
    el.textContent = text;
    el.className = "toast" + (isError ? " error" : "");
    setTimeout(function () { el.className = "toast hidden"; }, 5000);
  }
  function failed(res) {
    toast(t("common.error") + ": " + (res.body && res.body.error ? res.body.error.message : res.status), true);
  }

  var crews = [];
  function renderCrews() {
    document.getElementById("crew-rows").innerHTML = crews.map(function (c) {
      return '<tr data-crew="' + esc(c.crew_id) + '"><td>' + esc(c.crew_id) + " " + esc(c.crew_name) + "</td><td>" +
             esc(c.vehicle_id) + " " + esc(c.plate || "") + "</td><td>" + esc(c.unit_id) + "</td><td>" +
             c.skills.map(function (s) { return t("category." + s); }).join(", ") + "</td><td>" +
             (c.vehicle_state ? t("state." + c.vehicle_state) : t("common.none")) + '</td><td data-on-shift="' + c.on_shift +
             '">' + t(c.on_shift ? "crews.on_shift" : "crews.off_shift") + '</td><td><button data-shift="' + esc(c.crew_id) +
             '">' + t("admin.toggle_shift") + "</button></td></tr>";
    }).join("");
    var select = document.querySelector("#new-user select[name=crew_id]");
    if (select) {
      select.innerHTML = '<option value=""></option>' + crews.map(function (c) {
        return '<option value="' + esc(c.crew_id) + '">' + esc(c.crew_id + " " + (c.crew_name || "")) + "</option>";
      }).join("");
    }
  }
  function loadCrews() {
    return api("GET", "/api/admin/crews").then(function (res) {
      if (res.ok) { crews = res.body.crews; renderCrews(); }
    });
  }
  document.getElementById("crew-rows").addEventListener("click", function (ev) {
    var id = ev.target.getAttribute("data-shift");
    if (!id) { return; }
    var crew = crews.filter(function (c) { return c.crew_id === id; })[0];
    api("PUT", "/api/admin/crews/" + encodeURIComponent(id) + "/shift", { on_shift: !crew.on_shift }).then(function (res) {
      if (res.ok) { crew.on_shift = res.body.on_shift; renderCrews(); } else { failed(res); }
    });
  });

  var users = [];
  function renderUsers() {
    document.getElementById("user-rows").innerHTML = users.map(function (u) {
      return '<tr data-user="' + esc(u.name) + '"><td>' + esc(u.name) + "</td><td>" + t("role." + u.role) + "</td><td>" +
             esc(u.display) + "</td><td>" + esc(u.crew_id || "") + "</td><td>" + (u.active ? "✔" : "✘") +
             '</td><td><button data-toggle="' + esc(u.name) + '">' + t(u.active ? "admin.disable" : "admin.enable") +
             '</button> <button data-reset="' + esc(u.name) + '">' + t("admin.reset") + "</button></td></tr>";
    }).join("");
  }
  function loadUsers() {
    return api("GET", "/api/admin/users").then(function (res) {
      if (res.ok) { users = res.body.users; renderUsers(); }
    });
  }
  if (isAdmin) {
    document.getElementById("new-user").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var form = ev.target, body = {};
      ["name", "role", "display", "crew_id", "password"].forEach(function (k) {
        var v = form.elements[k].value;
        if (v !== "") { body[k] = v; }
      });
      api("POST", "/api/admin/users", body).then(function (res) {
        if (!res.ok) { failed(res); return; }
        var msg = fmt("admin.created", { name: res.body.user.name });
        if (res.body.password) { msg += " · " + fmt("admin.new_password", { name: res.body.user.name, password: res.body.password }); }
        document.getElementById("user-message").textContent = msg;
        form.reset();
        loadUsers();
      });
    });
    document.getElementById("user-rows").addEventListener("click", function (ev) {
      var toggle = ev.target.getAttribute("data-toggle"), reset = ev.target.getAttribute("data-reset");
      if (toggle) {
        var user = users.filter(function (u) { return u.name === toggle; })[0];
        api("PATCH", "/api/admin/users/" + encodeURIComponent(toggle), { active: !user.active }).then(function (res) {
          if (res.ok) { loadUsers(); } else { failed(res); }
        });
      } else if (reset) {
        api("POST", "/api/admin/users/" + encodeURIComponent(reset) + "/password", {}).then(function (res) {
          if (res.ok) {
            document.getElementById("user-message").textContent = fmt("admin.new_password", { name: reset, password: res.body.password });
          } else { failed(res); }
        });
      }
    });
    loadUsers();
  }
  document.addEventListener("langchange", function () { renderCrews(); if (isAdmin) { renderUsers(); } });
  loadCrews();
})();
