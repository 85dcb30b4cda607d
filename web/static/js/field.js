// Field crew page (外勤) for a phone: assignments, accept/decline, navigation, en route, on site,
// resolve with a note and photos. Actions go through a queue kept in localStorage and are sent in
// order when the connection is up; each carries the expected_version and a client action id, and a
// conflict on replay counts as done when the ticket already reached the action's target state.
// A service worker (/field/sw.js) keeps the page's shell, so the page, its last known tickets and
// the queue come back on a reload without a connection; logging out drops that cache.
(function () {
  "use strict";
  var t = window.I18N.t;
  var zone = document.body.getAttribute("data-zone") || "Asia/Shanghai";
  var USER = document.body.getAttribute("data-user") || "crew";
  var QKEY = "field.queue." + USER, CKEY = "field.cache." + USER;
  var TARGET = { accept: "accepted", decline: "declined", depart: "en_route", arrive: "on_site", resolve: "resolved" };
  var MAIN = ["dispatched", "accepted", "en_route", "on_site", "resolved", "callback", "closed"];
  var CURRENT = { accepted: true, en_route: true, on_site: true };
  var $ = function (id) { return document.getElementById(id); };

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function load(key, fallback) {
    try { var v = JSON.parse(localStorage.getItem(key)); return v == null ? fallback : v; } catch (e) { return fallback; }
  }
  var request = window.Api.request;  // api.js: {ok, status, body}; rejects without a connection
  function cid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function fmtTime(iso) {
    if (!iso) { return "—"; }
    return new Intl.DateTimeFormat("zh-CN", { timeZone: zone, hour: "2-digit", minute: "2-digit", hour12: false })
      .format(new Date(iso));
  }
  function fmtDistance(m) { return m == null ? "—" : m < 1000 ? Math.round(m) + " m" : (m / 1000).toFixed(1) + " km"; }
  function fmtLeft(s) {
    if (s == null) { return ""; }
    return window.I18N.fmt(s < 0 ? "field.overdue" : "field.left", { t: window.I18N.duration(s) });
  }
  function label(kind, value) { return value ? t("df." + kind + "." + value) : ""; }

  // state ----------------------------------------------------------------------------------
  var cache = load(CKEY, { tickets: {}, order: [], vehicle: null, done: [] });
  var tickets = cache.tickets || {}, order = cache.order || [], vehicle = cache.vehicle || null;
  var done = cache.done || [];
  var queue = load(QKEY, []);
  var photos = [];          // {number, file}: kept in memory until sent
  var drafts = {};          // number -> {resolution, reason, declining}
  var flushing = false;
  var generation = 0;       // bumped by every change we make: a list fetched before it is stale

  function persist() {
    localStorage.setItem(QKEY, JSON.stringify(queue));
    localStorage.setItem(CKEY, JSON.stringify({ tickets: tickets, order: order, vehicle: vehicle, done: done.slice(-20) }));
  }
  function pendingFor(number) { return queue.filter(function (q) { return q.number === number; }); }
  function shown(number) {  // the ticket as the crew sees it: the server's view with queued actions applied
    var tk = tickets[number];
    if (!tk) { return null; }
    var pend = pendingFor(number);
    if (!pend.length) { return tk; }
    var copy = Object.assign({}, tk);
    copy.state = pend[pend.length - 1].target;
    copy.version = tk.version + pend.length;
    copy.pending = pend.length;
    return copy;
  }

  // rendering ------------------------------------------------------------------------------
  function etrForm(tk) {  // a call of an incident: its primary's crew gives the restoration time (预计恢复时间)
    if (!tk.incident_id || ["accepted", "en_route", "on_site"].indexOf(tk.state) < 0) { return ""; }
    return '<label class="field-label">' + esc(t("field.etr")) + '<input class="etr" type="datetime-local"></label>' +
      '<div class="btns"><button data-action="etr" data-number="' + esc(tk.number) + '" data-incident="' +
      esc(tk.incident_id) + '">' + esc(t("field.etr.set")) + "</button></div>";
  }
  function buttons(tk) {
    return etrForm(tk) + stepButtons(tk);
  }
  function stepButtons(tk) {
    var n = esc(tk.number), d = drafts[tk.number] || {};
    if (tk.state === "dispatched") {
      if (d.declining) {
        return '<label class="field-label">' + esc(t("field.reason")) + '<input class="reason" value="' + esc(d.reason || "") +
          '" maxlength="500"></label><div class="btns"><button class="danger" data-action="decline" data-number="' + n + '">' +
          esc(t("field.decline.confirm")) + '</button><button data-action="decline-cancel" data-number="' + n + '">' +
          esc(t("field.cancel")) + "</button></div>";
      }
      return '<div class="btns"><button class="primary" data-action="accept" data-number="' + n + '">' + esc(t("field.accept")) +
        '</button><button data-action="decline-open" data-number="' + n + '">' + esc(t("field.decline")) + "</button></div>";
    }
    if (tk.state === "accepted") {
      return '<div class="btns"><button class="primary" data-action="depart" data-number="' + n + '">' + esc(t("field.depart")) + "</button></div>";
    }
    if (tk.state === "en_route") {
      return '<div class="btns"><button class="primary" data-action="arrive" data-number="' + n + '">' + esc(t("field.arrive")) + "</button></div>";
    }
    if (tk.state === "on_site") {
      return '<label class="field-label">' + esc(t("field.resolution")) + '<textarea class="resolution" rows="3" maxlength="2000">' +
        esc(d.resolution || "") + '</textarea></label><label class="field-label">' + esc(t("field.photos")) +
        '<input class="photos" type="file" accept="image/jpeg,image/png,image/webp" capture="environment" multiple></label>' +
        '<div class="btns"><button class="primary" data-action="resolve" data-number="' + n + '">' + esc(t("field.resolve")) +
        "</button></div>";
    }
    return "";
  }
  function card(tk, main) {
    var nav = tk.nav ? '<a class="nav-link" target="_blank" rel="noopener" href="' + esc(tk.nav.amap_uri) + '">' +
      esc(t("field.navigate")) + "</a>" : "";
    return '<article class="card urgency-' + esc(tk.urgency) + '" data-number="' + esc(tk.number) + '" data-state="' + esc(tk.state) +
      '" data-key="' + esc(key(tk)) + '">' +
      '<header><b class="number">' + esc(tk.number) + '</b> <span class="state">' + esc(label("state", tk.state)) + "</span>" +
      (tk.pending ? ' <span class="unsent">' + esc(t("field.unsent")) + "</span>" : "") +
      ' <span class="urgency">' + esc(label("urgency", tk.urgency)) + "</span></header>" +
      '<p class="what">' + esc(label("category", tk.category)) + " · " + esc(label("type", tk.type)) + "</p>" +
      '<p class="address">' + esc(tk.address || "—") + "</p>" +
      '<p class="desc">' + esc(tk.description || "") + "</p>" +
      '<p class="meta">' + esc(t("field.caller")) + " " + esc(tk.caller_name || "") + " " + esc(tk.caller_phone || "") +
      ' · <span class="left">' + esc(fmtLeft(tk.time_left_s)) + "</span>" +
      (tk.distance_m != null ? ' · <span class="distance">' + esc(t("field.distance")) + " " + esc(fmtDistance(tk.distance_m)) + "</span>" : "") +
      "</p>" + (main ? nav : "") + buttons(tk) + "</article>";
  }
  function key(tk) { return [tk.number, tk.state, tk.version, tk.pending || 0, (drafts[tk.number] || {}).declining ? 1 : 0, window.I18N.lang()].join("|"); }
  function place(container, html, tk) {
    var old = container.querySelector('article[data-number="' + tk.number + '"]');
    if (old && old.dataset.key === key(tk)) {
      var left = old.querySelector(".left");
      if (left) { left.textContent = fmtLeft(tk.time_left_s); }
      return old;
    }
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var el = holder.firstChild;
    if (old) { container.replaceChild(el, old); } else { container.appendChild(el); }
    return el;
  }
  function render() {
    var views = order.map(shown).filter(function (tk) { return tk && !TERMINAL(tk.state); });
    var current = views.filter(function (tk) { return CURRENT[tk.state]; })[0] || views[0] || null;
    var rest = views.filter(function (tk) { return tk !== current; });
    var cur = $("current-card");
    if (current) {
      if (cur.querySelector(".muted")) { cur.innerHTML = ""; }
      Array.prototype.forEach.call(cur.querySelectorAll("article"), function (a) { if (a.dataset.number !== current.number) { a.remove(); } });
      place(cur, card(current, true), current);
    } else {
      cur.innerHTML = '<p class="muted">' + esc(t("field.none")) + "</p>";
    }
    var q = $("queue");
    var keep = {};
    rest.forEach(function (tk) { keep[tk.number] = true; });
    Array.prototype.forEach.call(q.querySelectorAll("article"), function (a) { if (!keep[a.dataset.number]) { a.remove(); } });
    rest.forEach(function (tk) { q.appendChild(place(q, card(tk, false), tk)); });
    $("queue-count").textContent = rest.length;
    $("done").innerHTML = done.slice(-10).reverse().map(function (d) {
      return '<li data-number="' + esc(d.number) + '">' + esc(d.number) + " · " + esc(label("state", d.state)) + " · " + esc(fmtTime(d.at)) + "</li>";
    }).join("");
    var n = queue.length + photos.length;
    var badge = $("pending");
    badge.textContent = t("field.pending").replace("{n}", n);
    badge.classList.toggle("hidden", n === 0);
    badge.dataset.count = n;
    var net = $("net");
    net.textContent = navigator.onLine ? t("field.online") : t("field.offline");
    net.className = "net " + (navigator.onLine ? "online" : "offline");
    drawMap(current);
  }
  function TERMINAL(state) { return ["resolved", "callback", "closed", "declined", "returned", "cancelled", "merged"].indexOf(state) >= 0; }
  function notice(text) {
    var el = $("notice");
    el.textContent = text;
    el.classList.toggle("hidden", !text);
  }

  // map ------------------------------------------------------------------------------------
  var map = null, mapKey = null, overlay = null;
  function drawMap(tk) {
    var box = $("field-map");
    if (!tk || !tk.nav) { box.classList.add("hidden"); return; }
    box.classList.remove("hidden");
    if (!map) {
      map = L.map("field-map", window.Basemap.mapOptions({ zoomControl: false, attributionControl: false }))
        .setView([tk.nav.wgs84[1], tk.nav.wgs84[0]], 14);
      window.Basemap.addTo(map);  // the street base map (basemap.js; its tiles need the network)
      overlay = L.layerGroup().addTo(map);
      if (navigator.onLine) {
        ["districts", "roads"].forEach(function (kind) {
          request("GET", "/api/layers/" + kind).then(function (r) {
            if (!r.ok) { return; }
            L.geoJSON(r.body, { interactive: false, style: kind === "roads" ? { color: "#c9b46a", weight: 1.5 } :
              { color: "#5b6b7d", weight: 1.5, fillColor: "#eef1f5", fillOpacity: 0.4 } }).addTo(map).bringToBack();
            box.dataset.layers = ((box.dataset.layers ? box.dataset.layers + "," : "") + kind);
          }).catch(function () { /* the map works without base layers */ });
        });
      }
    }
    var fix = vehicle && vehicle.fix;
    var k = tk.number + "|" + (fix ? fix.lon.toFixed(4) + "," + fix.lat.toFixed(4) : "");
    if (k === mapKey) { return; }
    mapKey = k;
    overlay.clearLayers();
    var target = [tk.nav.wgs84[1], tk.nav.wgs84[0]];
    L.circleMarker(target, { radius: 9, color: "#c0392b", weight: 3, fillOpacity: 0.5 }).addTo(overlay);
    if (fix) {
      var from = [fix.lat, fix.lon];
      L.circleMarker(from, { radius: 7, color: "#1560bd", weight: 2, fillOpacity: 0.8 }).addTo(overlay);
      L.polyline([from, target], { color: "#1560bd", weight: 3, dashArray: "6 6" }).addTo(overlay);
      map.fitBounds([from, target], { padding: [24, 24], maxZoom: 16 });
    } else {
      map.setView(target, 15);
    }
    box.dataset.route = fix ? "line" : "target";
  }

  // the queue ------------------------------------------------------------------------------
  function enqueue(number, action, args) {
    var tk = shown(number);
    if (!tk || pendingFor(number).some(function (q) { return q.action === action; })) { return; }
    queue.push({ cid: cid(), number: number, action: action, args: args || {}, expected_version: tk.version,
                 target: TARGET[action], queued_at: new Date().toISOString() });
    persist();
    render();
    flush();
  }
  function rebase(number, version) {  // later queued actions of this ticket follow the version the server gave
    var k = 0;
    queue.forEach(function (q) { if (q.number === number) { q.expected_version = version + k; k += 1; } });
  }
  function finished(item, ticket) {
    generation += 1;
    queue.shift();
    if (ticket) {
      tickets[item.number] = Object.assign({}, tickets[item.number] || {}, ticket);
      rebase(item.number, ticket.version);
      if (TERMINAL(ticket.state)) { done.push({ number: item.number, state: ticket.state, at: ticket.updated_at }); }
    }
    persist();
    render();
  }
  function flush() {
    if (flushing || !navigator.onLine) { return; }
    if (!queue.length) { sendPhotos(); return; }
    flushing = true;
    var item = queue[0];
    request("POST", "/api/tickets/" + item.number + "/actions/" + item.action,
            Object.assign({ expected_version: item.expected_version }, item.args), { "X-Client-Action-Id": item.cid })
      .then(function (r) {
        if (r.ok) { finished(item, r.body.ticket); return null; }
        if (r.status === 409 || r.status === 404) { return reconcile(item, r); }
        finished(item, null);
        notice(t("field.failed").replace("{n}", item.number) + " " + window.Api.message(r));
        return null;
      })
      .then(function () { flushing = false; if (queue.length || photos.length) { flush(); } else { refresh(); } },
            function () { flushing = false; render(); });  // no connection: keep the action and retry later
  }
  function reconcile(item, failed) {
    return request("GET", "/api/tickets/" + item.number).then(function (r) {
      if (!r.ok) {
        finished(item, null);
        if (item.action === "decline") { done.push({ number: item.number, state: "declined", at: new Date().toISOString() }); render(); }
        else { notice(t("field.gone").replace("{n}", item.number)); delete tickets[item.number]; render(); }
        return;
      }
      var fresh = r.body, reached = MAIN.indexOf(fresh.state) >= MAIN.indexOf(item.target) && MAIN.indexOf(item.target) >= 0;
      if (fresh.state === item.target || reached) { finished(item, fresh); return; }  // already applied
      if (!item.retried && fresh.allowed_actions.indexOf(item.action) >= 0) {
        item.retried = true;
        item.expected_version = fresh.version;
        tickets[item.number] = fresh;
        persist();
        return;
      }
      finished(item, fresh);
      notice(t("field.failed").replace("{n}", item.number) + " " + window.Api.message(failed));
    });
  }
  function sendPhotos() {
    if (!photos.length || flushing || !navigator.onLine) { return; }
    flushing = true;
    var p = photos[0], form = new FormData();
    form.append("photo", p.file, "photo");
    request("POST", "/api/tickets/" + p.number + "/photos", form).then(function (r) {
      photos.shift();
      generation += 1;
      if (r.ok) { tickets[p.number] = Object.assign({}, tickets[p.number] || {}, r.body.ticket); rebase(p.number, r.body.ticket.version); }
      else { notice(t("field.photo_failed") + " " + window.Api.message(r)); }
      flushing = false; persist(); render(); flush();
    }, function () { flushing = false; render(); });
  }

  // server state ---------------------------------------------------------------------------
  function refresh() {
    if (!navigator.onLine || flushing || queue.length) { render(); return Promise.resolve(); }
    var asked = generation;
    return request("GET", "/api/field/assignments").then(function (r) {
      if (!r.ok) { return; }
      if (asked !== generation || flushing || queue.length) { return; }  // we changed something meanwhile
      var fresh = {};
      r.body.assignments.forEach(function (tk) { fresh[tk.number] = tk; });
      queue.forEach(function (q) { if (!fresh[q.number] && tickets[q.number]) { fresh[q.number] = tickets[q.number]; } });
      order.forEach(function (n) {  // gone from the list without our doing: resolved elsewhere or reassigned
        if (!fresh[n] && tickets[n] && !TERMINAL(tickets[n].state)) { done.push({ number: n, state: "gone", at: r.body.now }); }
      });
      tickets = fresh;
      order = r.body.assignments.map(function (tk) { return tk.number; });
      Object.keys(fresh).forEach(function (n) { if (order.indexOf(n) < 0) { order.push(n); } });
      vehicle = r.body.vehicle;
      persist();
      render();
      document.body.dataset.loaded = "1";
    }).catch(function () { render(); });
  }

  // events ---------------------------------------------------------------------------------
  document.addEventListener("input", function (ev) {
    var art = ev.target.closest && ev.target.closest("article[data-number]");
    if (!art) { return; }
    var d = drafts[art.dataset.number] = drafts[art.dataset.number] || {};
    if (ev.target.classList.contains("resolution")) { d.resolution = ev.target.value; }
    if (ev.target.classList.contains("reason")) { d.reason = ev.target.value; }
  });
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("button[data-action]");
    if (!btn) { return; }
    var number = btn.dataset.number, action = btn.dataset.action, art = btn.closest("article");
    var d = drafts[number] = drafts[number] || {};
    notice("");
    if (action === "decline-open") { d.declining = true; render(); art = document.querySelector('article[data-number="' + number + '"]'); art.querySelector(".reason").focus(); return; }
    if (action === "decline-cancel") { d.declining = false; render(); return; }
    if (action === "decline") {
      var reason = (art.querySelector(".reason").value || "").trim();
      if (!reason) { notice(t("field.reason.required")); art.querySelector(".reason").focus(); return; }
      d.declining = false;
      enqueue(number, "decline", { reason: reason });
      return;
    }
    if (action === "resolve") {
      var text = (art.querySelector(".resolution").value || "").trim();
      if (!text) { notice(t("field.resolution.required")); art.querySelector(".resolution").focus(); return; }
      var files = Array.prototype.slice.call(art.querySelector(".photos").files || []);
      var tooBig = files.filter(function (f) { return f.size > 5 * 1024 * 1024; });
      if (tooBig.length) { notice(t("field.photo_too_large")); return; }
      files.forEach(function (f) { photos.push({ number: number, file: f }); });
      delete drafts[number];
      enqueue(number, "resolve", { resolution: text });
      return;
    }
    if (action === "etr") {  // online only: the server checks it is the crew of the incident's primary ticket
      var at = window.I18N.zonedEpoch(art.querySelector(".etr").value, zone);
      if (at == null) { notice(t("field.etr.required")); art.querySelector(".etr").focus(); return; }
      request("POST", "/api/incidents/" + encodeURIComponent(btn.dataset.incident) + "/etr", { etr: new Date(at).toISOString() })
        .then(function (r) { notice(r.ok ? t("field.etr.done") : window.Api.message(r)); document.body.dataset.etr = r.ok ? "sent" : "refused"; },
              function () { notice(t("field.etr.offline")); });
      return;
    }
    if (TARGET[action]) { enqueue(number, action, {}); }
  });
  // the offline shell -----------------------------------------------------------------------
  var SHELL_PREFIX = "field-shell-";
  function registerShell() {
    if (!("serviceWorker" in navigator) || !navigator.onLine) { return; }
    navigator.serviceWorker.register("/field/sw.js", { scope: "/field" }).then(function (reg) {
      document.body.dataset.shell = reg.active ? "active" : "installing";
    }, function (e) { console.warn("field: offline shell unavailable:", e && e.message); });
  }
  function dropShell(ev) {  // the cached page names this user: forget it on logout
    if (!window.caches) { return; }
    var form = ev.target;
    ev.preventDefault();
    var go = function () { form.submit(); };
    caches.keys().then(function (keys) {
      return Promise.all(keys.filter(function (k) { return k.indexOf(SHELL_PREFIX) === 0; })
        .map(function (k) { return caches.delete(k); }));
    }).then(go, go);
  }
  var logout = document.querySelector("form[action='/logout']");
  if (logout) { logout.addEventListener("submit", dropShell); }
  window.addEventListener("online", function () { registerShell(); render(); flush(); refresh(); });
  window.addEventListener("offline", render);
  document.addEventListener("langchange", function () { mapKey = null; render(); });
  setInterval(function () { if (queue.length || photos.length) { flush(); } }, 3000);
  setInterval(function () { if (!queue.length && !photos.length) { refresh(); } }, 10000);
  render();
  registerShell();
  if (queue.length) { flush(); } else { refresh(); }
})();
