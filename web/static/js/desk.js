// Call agent desk (坐席受理): keyboard-first intake, address search on a mini map, caller history,
// repeat-call (same caller) / duplicate (another caller, same problem) check before saving,
// an open incident near the caller attached with one key (归入事件, Alt+G) and the answer with its
// restoration time, the outage notices (停水/停电通知), direct close of consultations, callback queue (回访).
(function () {
  "use strict";
  var t = window.I18N.t;
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";
  var DIRECT_CLOSE = { consultation: true, suggestion: true, praise: true };
  var $ = function (id) { return document.getElementById(id); };

  // helpers --------------------------------------------------------------------------------
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  var api = window.Api.request;  // api.js: {ok, status, body}; rejects without a connection
  function fmtTime(iso) {
    if (!iso) { return "—"; }
    return new Intl.DateTimeFormat(window.I18N.lang() === "en" ? "en-GB" : "zh-CN", { timeZone: zone,
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }
  function fmtDistance(m) {
    if (m == null) { return ""; }
    return m < 1000 ? Math.round(m) + " m" : (m / 1000).toFixed(1) + " km";
  }
  function label(kind, value) { return value ? t("df." + kind + "." + value) : ""; }
  function ticketLine(tk, extra) {
    return '<li data-number="' + esc(tk.number) + '" class="tk state-' + esc(tk.state) + '">' +
      '<b>' + esc(tk.number) + '</b> <span class="badge">' + esc(label("state", tk.state)) + '</span> ' +
      esc(label("category", tk.category)) + "/" + esc(label("type", tk.type)) + " · " + esc(fmtTime(tk.created_at)) +
      (extra || "") + '<div class="desc">' + esc(tk.address || "") + " " + esc(tk.description || "") + "</div></li>";
  }
  function applyPlaceholders() {
    document.querySelectorAll("[data-i18n-ph]").forEach(function (el) { el.placeholder = t(el.getAttribute("data-i18n-ph")); });
  }

  // mini map -------------------------------------------------------------------------------
  var map = L.map("desk-map", window.Basemap.mapOptions({ zoomControl: true, attributionControl: false }))
    .setView([36.38, 119.75], 13);
  window.Basemap.addTo(map);  // the street base map (basemap.js)
  var candidateLayer = L.layerGroup().addTo(map);
  var pickMarker = null, cityBounds = null;
  api("GET", "/api/layers/districts").then(function (r) {
    if (!r.ok) { return; }
    var layer = L.geoJSON(r.body, { style: { color: "#5b6b7d", weight: 2, fillColor: "#e7ecf2", fillOpacity: 0.45 },
      interactive: false }).addTo(map);
    cityBounds = layer.getBounds();
    map.fitBounds(cityBounds);
    $("desk-map").dataset.ready = "1";
  });
  map.on("click", function (ev) {
    var lon = +ev.latlng.lng.toFixed(6), lat = +ev.latlng.lat.toFixed(6);
    api("GET", "/api/address/reverse?lon=" + lon + "&lat=" + lat).then(function (r) {
      if (!r.ok) { return; }
      var near = r.body.candidates[0];
      var text = near ? near.label + (near.distance_m > 30 ? " " + t("desk.near") : "") : lon + ", " + lat;
      choose({ label: text, lon: lon, lat: lat, id: near ? near.id : null });
    });
  });

  // address search ---------------------------------------------------------------------------
  var place = null, candidates = [], active = -1, searchTimer = null, searchSeq = 0;
  var addressInput = $("address"), list = $("address-candidates");
  function showCandidates(rows) {
    candidates = rows; active = rows.length ? 0 : -1;
    candidateLayer.clearLayers();
    list.innerHTML = rows.map(function (c, i) {
      var match = c.match === "exact" ? "exact" : "approximate";  // 精确: everything said was found
      var kind = c.kind === "poi" || c.kind === "village" || c.kind === "crossing" ?  // 地点 · 医院, 村组 · 村民小组, 路口
        ' <span class="kind kind-' + c.kind + '">' + esc(t("desk.kind." + c.kind) + (c.poi_type ? " · " + c.poi_type : "")) + "</span>" : "";
      return '<li role="option" id="cand-' + i + '" data-index="' + i + '" data-match="' + match + '" data-kind="' + esc(c.kind) + '">' +
        esc(c.label) + ' <span class="score">' + kind + '<span class="match match-' + match + '">' + esc(t("desk.match." + match)) + "</span> " +
        Math.round(c.score) + " " + esc(t("desk.points")) + "</span></li>";
    }).join("");
    list.classList.toggle("hidden", !rows.length);
    addressInput.setAttribute("aria-expanded", rows.length ? "true" : "false");
    var bounds = [];
    rows.forEach(function (c, i) {
      var m = L.circleMarker([c.lat, c.lon], { radius: 6, color: "#1560bd", weight: 2, fillOpacity: 0.6 })
        .bindTooltip(String(i + 1) + ". " + c.label);
      m.on("click", function () { choose(c); });
      candidateLayer.addLayer(m);
      bounds.push([c.lat, c.lon]);
    });
    if (bounds.length) { map.fitBounds(bounds, { maxZoom: 16, padding: [30, 30] }); }
    highlight();
  }
  function highlight() {
    list.querySelectorAll("li").forEach(function (li, i) { li.classList.toggle("active", i === active); });
    addressInput.setAttribute("aria-activedescendant", active >= 0 ? "cand-" + active : "");
  }
  function search() {
    var q = addressInput.value.trim(), seq = ++searchSeq;
    if (!q) { showCandidates([]); return; }
    api("GET", "/api/address/search?q=" + encodeURIComponent(q)).then(function (r) {
      if (seq !== searchSeq || !r.ok) { return; }
      showCandidates(r.body.candidates);
    });
  }
  function choose(c) {
    // an approximate match is saved only once the agent has checked the point on the map: the
    // confirm button, dragging the marker or a click on the map (a point picked there is the agent's)
    var approximate = c.match === "approximate";
    place = { address: c.label, lon: c.lon, lat: c.lat, confirmed: !approximate };
    addressInput.value = c.label;
    showCandidates([]);
    if (pickMarker) { map.removeLayer(pickMarker); }
    pickMarker = L.marker([c.lat, c.lon], { keyboard: false, title: c.label, draggable: approximate }).addTo(map);
    pickMarker.on("dragend", function () {
      var at = pickMarker.getLatLng();
      place.lon = +at.lng.toFixed(6); place.lat = +at.lat.toFixed(6);
      showLocation(); confirmPlace();
    });
    map.setView([c.lat, c.lon], Math.max(map.getZoom(), 16));
    showLocation();
    $("place-confirm").classList.toggle("hidden", !approximate);
    checkDuplicates();
    checkIncidents();
  }
  function showLocation() {
    $("location").textContent = t("desk.location") + " " + place.lon.toFixed(5) + ", " + place.lat.toFixed(5);
    $("location").dataset.lon = place.lon; $("location").dataset.lat = place.lat;
  }
  function confirmPlace() {
    if (!place) { return; }
    place.confirmed = true;
    $("place-confirm").classList.add("hidden");
    if (pickMarker && pickMarker.dragging) { pickMarker.dragging.disable(); }
    checkDuplicates();
    checkIncidents();
  }
  $("place-confirm-btn").addEventListener("click", function () { confirmPlace(); $("category").focus(); });
  addressInput.addEventListener("input", function () {
    place = null;
    $("place-confirm").classList.add("hidden");
    $("location").textContent = t("desk.location.none");
    showIncidents([]);
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 150);
  });
  addressInput.addEventListener("keydown", function (ev) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!candidates.length) { return; }
      ev.preventDefault();
      active = (active + (ev.key === "ArrowDown" ? 1 : candidates.length - 1)) % candidates.length;
      highlight();
    } else if (ev.key === "Enter" && !ev.ctrlKey) {
      ev.preventDefault();
      if (candidates.length && active >= 0) {
        choose(candidates[active]);
        $("category").focus();
      } else { clearTimeout(searchTimer); search(); }
    } else if (ev.key === "Escape") {
      showCandidates([]);
    }
  });
  list.addEventListener("mousedown", function (ev) {
    var li = ev.target.closest("li[data-index]");
    if (li) { ev.preventDefault(); choose(candidates[+li.dataset.index]); }
  });

  // caller history and duplicates ------------------------------------------------------------
  var lastPhone = null;
  function loadHistory() {
    var phone = $("phone").value.replace(/[\s-]/g, "");
    if (phone === lastPhone) { return; }
    lastPhone = phone;
    if (!/^\+?\d{5,20}$/.test(phone)) { $("history").innerHTML = '<li class="muted">' + esc(t("desk.history.none")) + "</li>"; return; }
    api("GET", "/api/tickets?phone=" + encodeURIComponent(phone) + "&sort=created&limit=20").then(function (r) {
      if (!r.ok) { return; }
      var rows = r.body.tickets;
      var open = rows.filter(function (tk) { return tk.allowed_actions.indexOf("repeat_call") >= 0; }).length;
      $("history").innerHTML = rows.length ? rows.map(function (tk) { return ticketLine(tk); }).join("") :
        '<li class="muted">' + esc(t("desk.history.empty")) + "</li>";
      $("history").dataset.count = rows.length;
      $("history").dataset.open = open;
      checkDuplicates();
    });
  }
  $("phone").addEventListener("blur", loadHistory);
  $("phone").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.ctrlKey) { ev.preventDefault(); loadHistory(); $("caller-name").focus(); }
  });
  var lastDup = null;
  function dupQuery() {
    var q = ["category=" + encodeURIComponent($("category").value), "type=" + encodeURIComponent($("type").value),
             "description=" + encodeURIComponent($("description").value.trim().slice(0, 2000))];
    if (place) { q.push("lon=" + place.lon, "lat=" + place.lat); }
    var phone = $("phone").value.replace(/[\s-]/g, "");
    if (/^\+?\d{5,20}$/.test(phone)) { q.push("phone=" + encodeURIComponent(phone)); }
    return q.join("&");
  }
  function checkDuplicates() {
    if (!place && !/\d{5,}/.test($("phone").value)) { return Promise.resolve(null); }
    return api("GET", "/api/tickets/duplicates?" + dupQuery()).then(function (r) {
      if (!r.ok) { return null; }
      lastDup = r.body;
      var rows = r.body.candidates;
      $("duplicates").innerHTML = rows.length ? rows.map(function (c) {
        var extra = (c.distance_m != null ? ' <span class="dist">' + esc(fmtDistance(c.distance_m)) + "</span>" : "") +
          (c.same_phone ? ' <span class="badge same">' + esc(t("desk.same_phone")) + "</span>" : "") +
          (c.ticket.number === r.body.repeat_of ? ' <span class="badge repeat" data-match="' + esc(r.body.match) + '">' +
            esc(t(r.body.match === "duplicate" ? "desk.repeat_of.duplicate" : "desk.repeat_of")) + "</span>" : "");
        return ticketLine(c.ticket, extra);
      }).join("") : '<li class="muted">' + esc(t("desk.nearby.empty")) + "</li>";
      return r.body;
    });
  }
  $("category").addEventListener("change", function () { checkDuplicates(); checkIncidents(); });

  // an open incident near the caller (归入事件) ------------------------------------------------------
  var nearIncidents = [], incidentSeq = 0;
  function checkIncidents() {
    var seq = ++incidentSeq;
    if (!place) { showIncidents([]); return; }
    api("GET", "/api/incidents/near?lon=" + place.lon + "&lat=" + place.lat + "&category=" +
        encodeURIComponent($("category").value)).then(function (r) {
      if (seq === incidentSeq && r.ok) { showIncidents(r.body.incidents); }
    });
  }
  function showIncidents(rows) {
    nearIncidents = rows;
    $("incident-box").classList.toggle("hidden", !rows.length);
    if (!rows.length) { return; }
    var inc = rows[0], notice = inc.notice;  // the nearest
    $("incident-id").textContent = inc.incident_id;
    $("incident-box").dataset.incident = inc.incident_id;
    var facts = [["desk.incident.area", notice ? notice.area_text : (inc.area_name || inc.supply_area)],
      ["desk.incident.calls", String(inc.calls)], ["desk.incident.distance", fmtDistance(inc.distance_m)],
      ["desk.incident.etr", inc.etr ? fmtTime(inc.etr) : t("desk.incident.etr.none")]];
    if (notice) { facts.push(["desk.incident.notice", notice.text]); }
    $("incident-facts").innerHTML = facts.map(function (f) {
      return "<dt>" + esc(t(f[0])) + '</dt><dd data-fact="' + esc(f[0].split(".").pop()) + '">' + esc(f[1]) + "</dd>";
    }).join("");
  }
  function attach() {
    var inc = nearIncidents[0];
    if (!inc || saving) { return; }
    if (!$("description").value.trim()) {  // one key: the call says what the incident is
      $("description").value = t("desk.incident.description").replace("{kind}", inc.notice ? inc.notice.kind :
        label("category", inc.category)).replace("{id}", inc.incident_id);
    }
    var bad = validate();
    if (bad) { showError(bad[1], bad[0]); return; }
    showError(null);
    var b = body(false);
    b.incident_id = inc.incident_id;
    saving = true;
    api("POST", "/api/tickets", b).then(function (r) {
      saving = false;
      if (!r.ok) {
        var err = window.Api.error(r);
        $("form-error").textContent = t("desk.err.server") + " " + (err.message || r.status);
        checkIncidents();
        return;
      }
      var res = $("result");
      res.innerHTML = esc(t("desk.incident.result")) + " " + esc(inc.incident_id) + " · " + esc(t("desk.incident.ticket")) +
        ' <b id="ticket-number">' + esc(r.body.ticket.number) + "</b>" + '<p id="answer-script" class="answer-script">' +
        esc(t("desk.incident.answer")) + " " + esc(inc.answer) + "</p>";
      res.dataset.number = r.body.ticket.number;
      res.dataset.incident = inc.incident_id;
      resetForm(true);
    }).catch(function (e) { saving = false; $("form-error").textContent = t("desk.err.network") + " " + e.message; });
  }
  $("attach-btn").addEventListener("click", attach);
  // a call the server grouped into an incident whose restoration time or notice is known: the answer too
  function showGroupedAnswer(incidentId, number) {
    api("GET", "/api/incidents/" + encodeURIComponent(incidentId)).then(function (r) {
      var res = $("result");
      if (!r.ok || res.dataset.number !== number || !(r.body.etr || (r.body.notice && r.body.notice.active))) { return; }
      res.dataset.incident = incidentId;
      res.insertAdjacentHTML("beforeend", '<p id="answer-script" class="answer-script">' + esc(t("desk.incident.answer")) +
        " " + esc(r.body.answer) + "</p>");
    });
  }

  // outage notices (停水/停电通知) -------------------------------------------------------------------
  function loadNotices() {
    return api("GET", "/api/notices").then(function (r) {
      if (!r.ok) { return; }
      $("notices").innerHTML = r.body.notices.length ? r.body.notices.map(function (n) {
        return '<li data-incident="' + esc(n.incident_id) + '"><span class="badge notice-kind">' + esc(n.kind) + "</span> <b>" +
          esc(n.area_text) + "</b> · " + esc(t("desk.incident.etr")) + " " + esc(n.etr ? fmtTime(n.etr) : t("desk.incident.etr.none")) +
          '<div class="desc">' + esc(n.text) + "</div></li>";
      }).join("") : '<li class="muted">' + esc(t("desk.notices.empty")) + "</li>";
    });
  }
  function toggleAnswer() { $("answer-row").classList.toggle("hidden", !DIRECT_CLOSE[$("type").value]); }
  $("type").addEventListener("change", function () { toggleAnswer(); checkDuplicates(); });

  // save -----------------------------------------------------------------------------------
  var saving = false;
  function body(link) {
    var b = { channel: "phone", caller_phone: $("phone").value.replace(/[\s-]/g, ""), caller_name: $("caller-name").value,
      address: place ? place.address : $("address").value.trim(), category: $("category").value, type: $("type").value,
      urgency: $("urgency").value, description: $("description").value.trim(), link: link };
    if (place) { b.lon = place.lon; b.lat = place.lat; }
    var answer = $("answer").value.trim();
    if (DIRECT_CLOSE[b.type] && answer) { b.answer = answer; }
    return b;
  }
  function validate() {
    var phone = $("phone").value.replace(/[\s-]/g, "");
    if (!/^\+?\d{5,20}$/.test(phone)) { return ["phone", "desk.err.phone"]; }
    if (!$("description").value.trim()) { return ["description", "desk.err.description"]; }
    if (place && !place.confirmed) { return ["place-confirm-btn", "desk.err.place"]; }
    return null;
  }
  function showError(key, field) {
    $("form-error").textContent = key ? t(key) : "";
    if (field) { $(field).focus(); }
  }
  function submit() {
    if (saving) { return; }
    var bad = validate();
    if (bad) { showError(bad[1], bad[0]); return; }
    showError(null);
    var direct = DIRECT_CLOSE[$("type").value] && $("answer").value.trim();
    if (direct) { create(false); return; }
    saving = true;
    checkDuplicates().then(function (dup) {
      saving = false;
      if (dup && (dup.repeat_of || dup.candidates.length)) { confirmDuplicates(dup); } else { create(true); }
    });
  }
  function confirmDuplicates(dup) {
    var box = $("dup-confirm");
    box.classList.remove("hidden");
    $("dup-text").textContent = t("desk.dup.text").replace("{n}", dup.candidates.length).replace("{r}", fmtDistance(dup.radius_m));
    var link = $("link-btn");
    link.classList.toggle("hidden", !dup.repeat_of);
    // the server's rule (command.repeats): the caller again (repeat, colours the ticket) or another
    // caller about the same problem (duplicate, joins its call count); the agent links or creates
    link.dataset.match = dup.match || "";
    link.textContent = dup.repeat_of ? t(dup.match === "duplicate" ? "desk.dup.link.duplicate" : "desk.dup.link") +
      " " + dup.repeat_of : "";
    (dup.repeat_of ? link : $("create-btn")).focus();
  }
  function hideConfirm() { $("dup-confirm").classList.add("hidden"); }
  $("link-btn").addEventListener("click", function () { hideConfirm(); create(true); });
  $("create-btn").addEventListener("click", function () { hideConfirm(); create(false); });
  $("cancel-btn").addEventListener("click", function () { hideConfirm(); $("description").focus(); });
  function create(link) {
    saving = true;
    api("POST", "/api/tickets", body(link)).then(function (r) {
      saving = false;
      if (!r.ok) {
        var err = window.Api.error(r);
        $("form-error").textContent = t("desk.err.server") + " " + (err.field ? err.field + ": " : "") + (err.message || r.status);
        return;
      }
      var tk = r.body.ticket, res = $("result");
      var key = r.body.linked ? (r.body.match === "duplicate" ? "desk.result.duplicate" : "desk.result.linked") :
        tk.state === "closed" ? "desk.result.closed" : "desk.result.created";
      res.innerHTML = esc(t(key)) + ' <b id="ticket-number">' + esc(tk.number) + "</b>" +
        (r.body.linked ? " " + esc(t("desk.result.calls").replace("{n}", tk.calls)) : "") +
        (tk.geocode && !r.body.linked ? ' <span id="result-geocode" data-match="' + esc(tk.geocode.match) + '">' +  // placed by the server
          esc(t("desk.geocode." + tk.geocode.match)) + "</span>" : "");
      res.dataset.number = tk.number;
      res.dataset.state = tk.state;
      if (r.body.incident_id && !r.body.linked) { showGroupedAnswer(r.body.incident_id, tk.number); }
      resetForm(true);
    }).catch(function (e) { saving = false; $("form-error").textContent = t("desk.err.network") + " " + e.message; });
  }
  function resetForm(keepResult) {
    $("intake").reset();
    place = null; lastPhone = null; lastDup = null;
    showCandidates([]);
    if (pickMarker) { map.removeLayer(pickMarker); pickMarker = null; }
    $("place-confirm").classList.add("hidden");
    if (cityBounds) { map.fitBounds(cityBounds); }
    $("location").textContent = t("desk.location.none");
    $("history").innerHTML = '<li class="muted">' + esc(t("desk.history.none")) + "</li>";
    $("duplicates").innerHTML = '<li class="muted">' + esc(t("desk.nearby.none")) + "</li>";
    hideConfirm(); toggleAnswer(); showError(null); showIncidents([]);
    if (!keepResult) { $("result").textContent = ""; }
    $("phone").focus();
  }
  $("intake").addEventListener("submit", function (ev) { ev.preventDefault(); submit(); });
  $("intake").addEventListener("keydown", function (ev) {  // Enter moves to the next field, Ctrl+Enter saves
    var el = ev.target;
    if (ev.key !== "Enter" || ev.ctrlKey || ev.metaKey || el.id === "address" || el.id === "phone" ||
        (el.tagName !== "INPUT" && el.tagName !== "SELECT")) { return; }
    ev.preventDefault();
    var fields = Array.prototype.filter.call($("intake").querySelectorAll("input, select, textarea"), function (f) {
      return f.type !== "hidden" && f.offsetParent !== null;
    });
    var next = fields[fields.indexOf(el) + 1];
    if (next) { next.focus(); }
  });
  $("clear-form").addEventListener("click", function () { resetForm(false); });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && !$("panel-intake").classList.contains("hidden")) {
      ev.preventDefault(); submit();
    } else if (ev.altKey && (ev.key === "g" || ev.key === "G" || ev.code === "KeyG") && nearIncidents.length &&
               !$("panel-intake").classList.contains("hidden")) {
      ev.preventDefault(); attach();  // 归入事件
    }
  });

  // callbacks (回访) --------------------------------------------------------------------------
  var SATISFACTION = ["satisfied", "basically_satisfied", "dissatisfied", "unreachable"];
  function loadCallbacks() {
    return api("GET", "/api/callbacks").then(function (r) {
      if (!r.ok) { return; }
      var rows = r.body.tickets;
      $("callback-count").textContent = rows.length;
      $("callback-rows").innerHTML = rows.map(function (tk) {
        return '<tr data-number="' + esc(tk.number) + '" data-version="' + tk.version + '"><td>' + esc(tk.number) + "</td><td>" +
          esc(label("category", tk.category)) + "/" + esc(label("type", tk.type)) + "</td><td>" +
          esc(tk.caller_name || "") + " " + esc(tk.caller_phone || "") + "</td><td>" + esc(tk.address || "") + "</td><td>" +
          esc(tk.resolution || "") + "</td><td>" + esc(fmtTime(tk.resolved_at)) + '</td><td><select class="satisfaction">' +
          SATISFACTION.map(function (s) { return '<option value="' + s + '">' + esc(t("df.satisfaction." + s)) + "</option>"; }).join("") +
          '</select> <label class="small"><input type="checkbox" class="truthful" checked> ' + esc(t("desk.callbacks.truthful")) +
          '</label></td><td><input class="words" maxlength="2000"></td><td><button type="button" class="record">' +
          esc(t("desk.callbacks.record")) + "</button></td></tr>";
      }).join("") || '<tr><td colspan="9" class="muted">' + esc(t("desk.callbacks.empty")) + "</td></tr>";
    });
  }
  $("callback-rows").addEventListener("click", function (ev) {
    var btn = ev.target.closest("button.record");
    if (!btn) { return; }
    var row = btn.closest("tr"), number = row.dataset.number;
    btn.disabled = true;
    api("POST", "/api/tickets/" + number + "/callback", { expected_version: +row.dataset.version,
      satisfaction: row.querySelector(".satisfaction").value, words: row.querySelector(".words").value.trim(),
      truthful: row.querySelector(".truthful").checked })  // not true or not satisfied: back to the unit (转办督查单)
      .then(function (r) {
        btn.disabled = false;
        var out = $("callback-result");
        if (!r.ok) { out.textContent = t("desk.err.server") + " " + window.Api.message(r); loadCallbacks(); return; }
        out.textContent = t("desk.callbacks.done").replace("{n}", number) + " " + label("state", r.body.ticket.state);
        out.dataset.number = number;
        loadCallbacks();
      });
  });
  function showTab(name) {
    ["intake", "callbacks"].forEach(function (n) {
      $("panel-" + n).classList.toggle("hidden", n !== name);
      $("tab-" + n).classList.toggle("active", n === name);
      $("tab-" + n).setAttribute("aria-selected", n === name ? "true" : "false");
    });
    if (name === "callbacks") { loadCallbacks(); } else { map.invalidateSize(); $("phone").focus(); }
  }
  document.querySelectorAll("[data-tab]").forEach(function (b) {
    b.addEventListener("click", function () { showTab(b.dataset.tab); });
  });

  function tick() {
    $("clock").textContent = new Intl.DateTimeFormat("zh-CN", { timeZone: zone, hour: "2-digit", minute: "2-digit",
      second: "2-digit", hour12: false }).format(new Date(window.I18N.now() * 1000));
  }
  document.addEventListener("langchange", function () {
    applyPlaceholders(); loadCallbacks(); loadNotices(); lastPhone = null; loadHistory(); showIncidents(nearIncidents);
  });
  applyPlaceholders();
  toggleAnswer();
  tick();
  setInterval(tick, 1000);
  loadCallbacks();
  loadNotices();
  setInterval(function () { if ($("panel-callbacks").classList.contains("hidden")) { loadCallbacks(); } }, 30000);
  setInterval(loadNotices, 30000);
  document.body.dataset.ready = "1";
})();
