// Administration page: users (create, change role, disable, reset password), crews (create, edit
// name, unit, skills, vehicle and members, deactivate), vehicles (register, edit plate, kind, unit,
// deactivate), crew shifts, responsible units (the tree; edit name, phone, parent, active), and the
// audit trail of every change. Supervisors see crews and shifts.
(function () {
  "use strict";
  var t = window.I18N.t;
  var api = window.Api.quiet;
  var isAdmin = document.body.getAttribute("data-role") === "admin";
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";
  var $ = function (id) { return document.getElementById(id); };
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  var fmt = window.I18N.fmt;
  function fmtTime(iso) {
    if (!iso) { return t("common.none"); }
    return new Intl.DateTimeFormat(window.I18N.lang() === "en" ? "en-GB" : "zh-CN", { timeZone: zone, year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })
      .format(new Date(iso));
  }
  function toast(text, isError) {
    var el = $("toast");
    el.textContent = text;
    el.className = "toast" + (isError ? " error" : "");
    setTimeout(function () { el.className = "toast hidden"; }, 5000);
  }
  function failed(res) {  // the refusal in the page's language when its code is known, else the server's words
    var err = window.Api.error(res), text = null;
    [err.code + "." + err.field, err.code].forEach(function (k) {
      if (text === null && t("admin.err." + k) !== "admin.err." + k) { text = t("admin.err." + k); }
    });
    if (text === null) { text = (err.field ? err.field + ": " : "") + window.Api.message(res); }
    text = text.split("{crew}").join(err.crew_id || "").split("{vehicle}").join(err.vehicle_id || "");
    toast(t("common.error") + ": " + text, true);
  }
  function selected(select) {
    return Array.prototype.filter.call(select.options, function (o) { return o.selected; }).map(function (o) { return o.value; });
  }
  function options(list, chosen) {  // list of [value, label]; chosen: values to select
    return list.map(function (o) {
      return '<option value="' + esc(o[0]) + '"' + (chosen.indexOf(o[0]) >= 0 ? " selected" : "") + ">" + esc(o[1]) + "</option>";
    }).join("");
  }

  // crews ------------------------------------------------------------------------------------
  var crews = [], vehicles = [], users = [];
  function crewRow(c) {
    var edit = isAdmin ? ' <button data-edit="' + esc(c.crew_id) + '">' + esc(t("admin.edit")) + "</button>" : "";
    return '<tr data-crew="' + esc(c.crew_id) + '" data-active="' + c.active + '"><td>' + esc(c.crew_id) + " " +
      esc(c.crew_name) + "</td><td>" + esc(c.unit_id) + "</td><td>" +
      c.skills.map(function (s) { return esc(t("category." + s)); }).join(", ") + '</td><td data-vehicle="' +
      esc(c.vehicle_id || "") + '">' + (c.vehicle_id ? esc(c.vehicle_id + " " + (c.plate || "")) : esc(t("common.none"))) +
      "</td><td>" + esc(c.members.join(", ")) + "</td><td>" +
      (c.vehicle_state ? esc(t("state." + c.vehicle_state)) : esc(t("common.none"))) + '</td><td data-on-shift="' +
      c.on_shift + '">' + esc(t(c.on_shift ? "crews.on_shift" : "crews.off_shift")) + "</td><td>" +
      esc(c.active ? "✔" : t("admin.inactive")) + '</td><td><button data-shift="' + esc(c.crew_id) + '">' +
      esc(t("admin.toggle_shift")) + "</button>" + edit + "</td></tr>";
  }
  function renderCrews() {
    $("crew-rows").innerHTML = crews.map(crewRow).join("");
    var select = document.querySelector("#new-user select[name=crew_id]");
    if (select) {
      select.innerHTML = '<option value=""></option>' + options(crews.filter(function (c) { return c.active; })
        .map(function (c) { return [c.crew_id, c.crew_id + " " + (c.crew_name || "")]; }), []);
    }
  }
  function loadCrews() {
    return api("GET", "/api/admin/crews").then(function (res) {
      if (res.ok) { crews = res.body.crews; renderCrews(); $("crews").dataset.loaded = String(Date.now()); }
    });
  }
  $("crew-rows").addEventListener("click", function (ev) {
    var shift = ev.target.getAttribute("data-shift"), edit = ev.target.getAttribute("data-edit");
    if (edit) { editCrew(edit); return; }
    if (!shift) { return; }
    var crew = crews.filter(function (c) { return c.crew_id === shift; })[0];
    api("PUT", "/api/admin/crews/" + encodeURIComponent(shift) + "/shift", { on_shift: !crew.on_shift }).then(function (res) {
      if (res.ok) { crew.on_shift = res.body.on_shift; renderCrews(); loadAudit(); } else { failed(res); }
    });
  });

  // the crew form: create, or edit the crew named by data-crew ---------------------------------
  var crewForm = $("crew-form");
  function crewFormChoices(crew) {
    var own = crew ? crew.crew_id : null;
    var free = vehicles.filter(function (v) { return v.active && (!v.crew_id || v.crew_id === own); });
    crewForm.elements.vehicle_id.innerHTML = '<option value="">' + esc(t("admin.no_vehicle")) + "</option>" +
      options(free.map(function (v) { return [v.vehicle_id, v.vehicle_id + " " + v.plate]; }), crew && crew.vehicle_id ? [crew.vehicle_id] : []);
    var crewUsers = users.filter(function (u) { return u.role === "crew"; });
    crewForm.elements.members.innerHTML = options(crewUsers.map(function (u) {
      return [u.name, u.name + (u.crew_id && u.crew_id !== own ? " (" + u.crew_id + ")" : "")];
    }), crew ? crew.members : []);
  }
  function resetCrewForm() {
    crewForm.reset();
    crewForm.dataset.mode = "create";
    delete crewForm.dataset.crew;
    crewForm.elements.crew_id.readOnly = false;
    $("crew-form-title").textContent = t("admin.crew_form.new");
    crewForm.querySelector(".edit-only").classList.add("hidden");
    crewFormChoices(null);
  }
  function editCrew(id) {
    var crew = crews.filter(function (c) { return c.crew_id === id; })[0];
    resetCrewForm();
    crewForm.dataset.mode = "edit";
    crewForm.dataset.crew = id;
    var f = crewForm.elements;
    f.crew_id.value = crew.crew_id;
    f.crew_id.readOnly = true;
    f.crew_name.value = crew.crew_name || "";
    f.unit_id.value = crew.unit_id || "";
    Array.prototype.forEach.call(f.skills.options, function (o) { o.selected = crew.skills.indexOf(o.value) >= 0; });
    f.active.checked = crew.active;
    crewForm.querySelector(".edit-only").classList.remove("hidden");
    $("crew-form-title").textContent = fmt("admin.crew_form.edit", { id: id });
    crewFormChoices(crew);
    f.crew_name.focus();
  }
  function crewBody() {
    var f = crewForm.elements;
    var body = { crew_name: f.crew_name.value.trim(), unit_id: f.unit_id.value, skills: selected(f.skills),
                 vehicle_id: f.vehicle_id.value || null, members: selected(f.members) };
    if (crewForm.dataset.mode === "edit") { body.active = f.active.checked; } else { body.crew_id = f.crew_id.value.trim(); }
    return body;
  }
  if (crewForm) {
    crewForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var editing = crewForm.dataset.mode === "edit", id = editing ? crewForm.dataset.crew : null;
      var req = editing ? api("PATCH", "/api/admin/crews/" + encodeURIComponent(id), crewBody())
                        : api("POST", "/api/admin/crews", crewBody());
      req.then(function (res) {
        if (!res.ok) { failed(res); return; }
        $("crew-message").textContent = fmt("admin.saved", { id: res.body.crew.crew_id });
        resetCrewForm();
        refreshAll();
      });
    });
    $("crew-form-cancel").addEventListener("click", resetCrewForm);
  }

  // vehicles ---------------------------------------------------------------------------------
  var vehicleForm = $("vehicle-form");
  function renderVehicles() {
    $("vehicle-rows").innerHTML = vehicles.map(function (v) {
      return '<tr data-vehicle="' + esc(v.vehicle_id) + '" data-active="' + v.active + '"><td>' + esc(v.vehicle_id) +
        '</td><td class="plate">' + esc(v.plate) + "</td><td>" + esc(t("vkind." + v.kind)) + "</td><td>" + esc(v.unit_id) +
        '</td><td data-crew="' + esc(v.crew_id || "") + '">' + (v.crew_id ? esc(v.crew_id + " " + (v.crew_name || "")) : esc(t("common.none"))) +
        "</td><td>" + (v.state ? esc(t("state." + v.state)) : esc(t("common.none"))) + "</td><td>" +
        esc(v.active ? "✔" : t("admin.inactive")) + '</td><td><button data-edit-vehicle="' + esc(v.vehicle_id) + '">' +
        esc(t("admin.edit")) + "</button></td></tr>";
    }).join("");
  }
  function loadVehicles() {
    return api("GET", "/api/admin/vehicles").then(function (res) {
      if (res.ok) { vehicles = res.body.vehicles; renderVehicles(); }
    });
  }
  function resetVehicleForm() {
    vehicleForm.reset();
    vehicleForm.dataset.mode = "create";
    delete vehicleForm.dataset.vehicle;
    vehicleForm.elements.vehicle_id.readOnly = false;
    $("vehicle-form-title").textContent = t("admin.vehicle_form.new");
    vehicleForm.querySelector(".edit-only").classList.add("hidden");
  }
  function editVehicle(id) {
    var v = vehicles.filter(function (x) { return x.vehicle_id === id; })[0], f = vehicleForm.elements;
    resetVehicleForm();
    vehicleForm.dataset.mode = "edit";
    vehicleForm.dataset.vehicle = id;
    f.vehicle_id.value = id;
    f.vehicle_id.readOnly = true;
    f.plate.value = v.plate || "";
    f.kind.value = v.kind;
    f.unit_id.value = v.unit_id || "";
    f.active.checked = v.active;
    vehicleForm.querySelector(".edit-only").classList.remove("hidden");
    $("vehicle-form-title").textContent = fmt("admin.vehicle_form.edit", { id: id });
    f.plate.focus();
  }
  if (vehicleForm) {
    vehicleForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = vehicleForm.elements, editing = vehicleForm.dataset.mode === "edit";
      var body = { plate: f.plate.value.trim(), kind: f.kind.value, unit_id: f.unit_id.value };
      if (editing) { body.active = f.active.checked; } else { body.vehicle_id = f.vehicle_id.value.trim(); }
      var req = editing ? api("PATCH", "/api/admin/vehicles/" + encodeURIComponent(vehicleForm.dataset.vehicle), body)
                        : api("POST", "/api/admin/vehicles", body);
      req.then(function (res) {
        if (!res.ok) { failed(res); return; }
        $("vehicle-message").textContent = fmt("admin.saved", { id: res.body.vehicle.vehicle_id + " " + res.body.vehicle.plate });
        resetVehicleForm();
        refreshAll();
      });
    });
    $("vehicle-form-cancel").addEventListener("click", resetVehicleForm);
    $("vehicle-rows").addEventListener("click", function (ev) {
      var id = ev.target.getAttribute("data-edit-vehicle");
      if (id) { editVehicle(id); }
    });
  }

  // audit trail ------------------------------------------------------------------------------
  var audit = [];
  function changeText(changes) {
    var text = Object.keys(changes || {}).map(function (k) {
      var v = changes[k];
      return Array.isArray(v) && v.length === 2 ? k + ": " + JSON.stringify(v[0]) + " → " + JSON.stringify(v[1])
                                                : k + ": " + JSON.stringify(v);
    }).join("; ");
    return text.length > 240 ? text.slice(0, 240) + "…" : text;
  }
  function renderAudit() {
    $("audit-rows").innerHTML = audit.map(function (e) {
      return '<tr data-audit="' + esc(e.id) + '" data-action="' + esc(e.action) + '"><td>' + esc(fmtTime(e.at)) + "</td><td>" +
        esc(e.by) + "</td><td>" + esc(t("audit." + e.action)) + "</td><td>" + esc(e.target) + "</td><td>" +
        esc(changeText(e.changes)) + "</td></tr>";
    }).join("");
  }
  function loadAudit() {
    if (!isAdmin) { return Promise.resolve(); }
    return api("GET", "/api/admin/audit?limit=50").then(function (res) {
      if (res.ok) { audit = res.body.entries; renderAudit(); }
    });
  }

  // responsible units: the tree (center → level 2 → level 3), edit name, phone, parent, active -----
  var units = [], unitForm = $("unit-form");
  function unitRow(u) {
    return '<tr data-unit="' + esc(u.unit_id) + '" data-level="' + u.level + '" data-active="' + u.active + '"><td>' +
      esc(u.unit_id) + '</td><td style="padding-left:' + (4 + 20 * u.depth) + 'px">' + esc(u.name) + "</td><td>" +
      esc(t("unit.level." + u.level)) + "</td><td>" + u.trades.map(function (c) { return esc(t("category." + c)); }).join(", ") +
      "</td><td>" + esc(u.phone) + "</td><td>" + esc(u.active ? "✔" : t("admin.inactive")) +
      '</td><td><button data-edit-unit="' + esc(u.unit_id) + '">' + esc(t("admin.edit")) + "</button></td></tr>";
  }
  function renderUnits() {
    if (unitForm) { $("unit-rows").innerHTML = units.map(unitRow).join(""); }
    var select = document.querySelector("#new-user select[name=unit_id]");  // a liaison's unit: 二级 or 三级, active
    if (select) {
      select.innerHTML = '<option value=""></option>' + options(units.filter(function (u) { return u.active && u.level > 1; })
        .map(function (u) { return [u.unit_id, u.unit_id + " " + u.name]; }), []);
    }
  }
  function loadUnits() {
    return api("GET", "/api/units").then(function (res) {
      if (res.ok) { units = res.body.units; renderUnits(); $("units").dataset.loaded = String(Date.now()); }
    });
  }
  function editUnit(id) {
    var u = units.filter(function (x) { return x.unit_id === id; })[0], f = unitForm.elements;
    unitForm.dataset.unit = id;
    f.name.value = u.name;
    f.phone.value = u.phone;
    f.active.checked = u.active;
    var parents = units.filter(function (p) { return p.level < u.level; });  // a parent is of a higher rank
    f.parent_id.innerHTML = u.parent_id ? options(parents.map(function (p) {
      return [p.unit_id, p.unit_id + " " + p.name];
    }), [u.parent_id]) : '<option value="">' + esc(t("common.none")) + "</option>";
    f.parent_id.disabled = !u.parent_id;
    $("unit-form-title").textContent = fmt("admin.unit_form.edit", { id: id + " " + u.name });
    unitForm.classList.remove("hidden");
    f.name.focus();
  }
  if (unitForm) {
    unitForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var id = unitForm.dataset.unit, f = unitForm.elements;
      var body = { name: f.name.value.trim(), phone: f.phone.value.trim(), active: f.active.checked };
      if (!f.parent_id.disabled) { body.parent_id = f.parent_id.value; }
      api("PATCH", "/api/admin/units/" + encodeURIComponent(id), body).then(function (res) {
        if (!res.ok) { failed(res); return; }
        $("unit-message").textContent = fmt("admin.saved", { id: res.body.unit.unit_id + " " + res.body.unit.name });
        unitForm.classList.add("hidden");
        loadUnits();
        loadAudit();
      });
    });
    $("unit-form-cancel").addEventListener("click", function () { unitForm.classList.add("hidden"); });
    $("unit-rows").addEventListener("click", function (ev) {
      var id = ev.target.getAttribute("data-edit-unit");
      if (id) { editUnit(id); }
    });
  }

  // users ------------------------------------------------------------------------------------
  function renderUsers() {
    $("user-rows").innerHTML = users.map(function (u) {
      return '<tr data-user="' + esc(u.name) + '"><td>' + esc(u.name) + "</td><td>" + esc(t("role." + u.role)) + "</td><td>" +
             esc(u.display) + "</td><td>" + esc(u.crew_id || u.unit_id || "") + "</td><td>" + (u.active ? "✔" : "✘") +
             '</td><td><button data-toggle="' + esc(u.name) + '">' + esc(t(u.active ? "admin.disable" : "admin.enable")) +
             '</button> <button data-reset="' + esc(u.name) + '">' + esc(t("admin.reset")) + "</button></td></tr>";
    }).join("");
  }
  function loadUsers() {
    return api("GET", "/api/admin/users").then(function (res) {
      if (res.ok) { users = res.body.users; renderUsers(); }
    });
  }
  function refreshAll() {
    var loads = [loadCrews()];
    if (isAdmin) { loads.push(loadUsers(), loadVehicles(), loadUnits(), loadAudit()); }
    return Promise.all(loads).then(function () {
      if (crewForm && crewForm.dataset.mode === "create") { crewFormChoices(null); }
    });
  }
  if (isAdmin) {
    $("new-user").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var form = ev.target, body = {};
      ["name", "role", "display", "crew_id", "unit_id", "password"].forEach(function (k) {
        var v = form.elements[k].value;
        if (v !== "") { body[k] = v; }
      });
      api("POST", "/api/admin/users", body).then(function (res) {
        if (!res.ok) { failed(res); return; }
        var msg = fmt("admin.created", { name: res.body.user.name });
        if (res.body.password) { msg += " · " + fmt("admin.new_password", { name: res.body.user.name, password: res.body.password }); }
        $("user-message").textContent = msg;
        form.reset();
        refreshAll();
      });
    });
    $("user-rows").addEventListener("click", function (ev) {
      var toggle = ev.target.getAttribute("data-toggle"), reset = ev.target.getAttribute("data-reset");
      if (toggle) {
        var user = users.filter(function (u) { return u.name === toggle; })[0];
        api("PATCH", "/api/admin/users/" + encodeURIComponent(toggle), { active: !user.active }).then(function (res) {
          if (res.ok) { refreshAll(); } else { failed(res); }
        });
      } else if (reset) {
        api("POST", "/api/admin/users/" + encodeURIComponent(reset) + "/password", {}).then(function (res) {
          if (res.ok) {
            $("user-message").textContent = fmt("admin.new_password", { name: reset, password: res.body.password });
            loadAudit();
          } else { failed(res); }
        });
      }
    });
  }
  document.addEventListener("langchange", function () {
    renderCrews();
    if (isAdmin) { renderUsers(); renderVehicles(); renderUnits(); renderAudit(); }
  });
  refreshAll();
})();
