// Console hotspots (热点分析): the heat map overlay, switched in the layer control and drawn as graded
// rectangles of the API's metric cells (GET /api/hotspots/heat) with a period and category selector
// and a legend; and the emerging clusters panel (GET /api/hotspots/clusters): a click on a cluster
// zooms to its area, outlines it and shows its tickets (a click on one opens the ticket detail).
(function () {
  "use strict";
  var C = window.Console, t = C.t, esc = C.esc, api = C.api, map = C.map;
  var PALETTE = ["#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026"];  // ColorBrewer YlOrRd, 5 classes
  var REFRESH_MS = 60000;
  var heatLayer = L.layerGroup(), clusterLayer = L.layerGroup().addTo(map);
  var legend = L.control({ position: "bottomright" });
  var heat = null, clusters = [], selected = null, categories = null;
  function el(id) { return document.getElementById(id); }
  function one(x) { return x == null ? t("common.none") : (Math.round(x * 10) / 10).toString(); }
  function categoryName(c) { return t("category." + c); }

  // the selectors --------------------------------------------------------------------------------
  function params(extra) {
    var q = ["category=" + encodeURIComponent(el("hs-category").value)];
    Object.keys(extra).forEach(function (k) { q.push(k + "=" + encodeURIComponent(extra[k])); });
    return q.join("&");
  }
  function fillCategories(list) {
    if (categories || !list) { return; }
    categories = list;
    var select = el("hs-category"), chosen = select.value;
    select.innerHTML = '<option value="" data-i18n="hotspots.all">' + t("hotspots.all") + "</option>" +
      list.map(function (c) { return '<option value="' + esc(c) + '">' + esc(categoryName(c)) + "</option>"; }).join("");
    select.value = chosen;
  }

  // heat map ---------------------------------------------------------------------------------------
  function classOf(count, max) { return Math.min(PALETTE.length - 1, Math.max(0, Math.ceil(count / max * PALETTE.length) - 1)); }
  function legendRows(max) {
    var rows = [], low = 1;
    PALETTE.forEach(function (color, k) {
      var high = Math.ceil(max * (k + 1) / PALETTE.length);
      if (high < low) { return; }
      rows.push('<div><i style="background:' + color + '"></i>' + (low === high ? low : low + "–" + high) + " " +
                t("hotspots.unit") + "</div>");
      low = high + 1;
    });
    return rows.join("");
  }
  legend.onAdd = function () {
    var div = L.DomUtil.create("div", "heat-legend");
    div.id = "heat-legend";
    return div;
  };
  function renderLegend() {
    var div = el("heat-legend");
    if (!div) { return; }
    div.innerHTML = "<b>" + C.fmt("hotspots.legend", { m: heat ? heat.cell_m : "" }) + "</b>" +
                    (heat && heat.max_count ? legendRows(heat.max_count) : '<div class="muted">' + t("hotspots.empty") + "</div>");
  }
  function renderSummary() {
    var p = t("hotspots." + el("hs-period").value);
    el("hs-summary").textContent = !map.hasLayer(heatLayer) ? t("hotspots.off") : !heat ? t("common.none")
      : C.fmt("hotspots.summary", { p: p, n: heat.tickets, max: heat.max_count, m: heat.cell_m });
  }
  function drawHeat() {
    heatLayer.clearLayers();
    (heat ? heat.cells : []).forEach(function (c) {
      var b = c.bounds, color = PALETTE[classOf(c.count, heat.max_count)];
      L.rectangle([[b[1], b[0]], [b[3], b[2]]], { color: color, weight: 0.5, fillColor: color, fillOpacity: 0.6 })
        .bindTooltip(C.fmt("hotspots.cell", { n: c.count, m: heat.cell_m })).addTo(heatLayer);
    });
    el("map").dataset.heatCells = String(heat ? heat.cells.length : 0);
    el("map").dataset.heatAt = String(Date.now());
    renderLegend();
    renderSummary();
  }
  function loadHeat() {
    if (!map.hasLayer(heatLayer)) { renderSummary(); return; }
    api("GET", "/api/hotspots/heat?" + params({ period: el("hs-period").value })).then(function (res) {
      if (!res.ok || !res.body) { C.toast(t("common.error") + " (" + res.status + ")", true); return; }
      heat = res.body;
      fillCategories(heat.categories);
      if (map.hasLayer(heatLayer)) { drawHeat(); }
    });
  }
  heatLayer.on("add", function () { legend.addTo(map); loadHeat(); });
  heatLayer.on("remove", function () { legend.remove(); renderSummary(); });
  C.layerControl.addOverlay(heatLayer, t("layer.heat"));

  // emerging clusters --------------------------------------------------------------------------------
  function riseText(c) {
    return c.rise_ratio == null ? t("clusters.new") : C.fmt("clusters.rise", { r: one(c.rise_ratio) });
  }
  function renderClusters() {
    el("cluster-count").textContent = C.fmt("clusters.n", { n: clusters.length });
    el("cluster-rows").innerHTML = clusters.map(function (c, i) {
      var key = c.area_id + ":" + c.category;
      return '<tr data-cluster="' + esc(key) + '" data-index="' + i + '"' + (selected === key ? ' class="selected"' : "") +
             "><td>" + esc(c.area_name) + '<div class="muted">' + esc(c.area_id) + "</div></td><td>" +
             esc(categoryName(c.category)) + "</td><td>" + C.fmt("clusters.count", { n: c.count, b: one(c.baseline_mean) }) +
             '</td><td title="z = ' + one(c.z) + ", p = " + c.p_value.toExponential(1) + '">' + riseText(c) + "</td></tr>";
    }).join("") || '<tr><td colspan="4" class="muted">' + t("clusters.none") + "</td></tr>";
    el("clusters").dataset.loaded = String(Date.now());
  }
  function showCluster(c) {
    selected = c.area_id + ":" + c.category;
    clusterLayer.clearLayers();
    if (c.geometry) {
      L.geoJSON(c.geometry, { style: { color: "#7d3c98", weight: 2, dashArray: "6 4", fillOpacity: 0.05 },
                              interactive: false }).addTo(clusterLayer);
    }
    var points = c.tickets.filter(function (tk) { return tk.lat != null; });
    points.forEach(function (tk) {
      L.circleMarker([tk.lat, tk.lon], { radius: 6, color: "#fff", weight: 1.5, fillColor: "#7d3c98", fillOpacity: 0.9 })
        .bindTooltip(esc(tk.number)).on("click", function () { C.emit("open-ticket", tk.number); }).addTo(clusterLayer);
    });
    var b = c.bounds;
    if (b) { map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { padding: [20, 20] }); }
    else if (points.length) { map.fitBounds(points.map(function (tk) { return [tk.lat, tk.lon]; }), { padding: [40, 40], maxZoom: 16 }); }
    el("cluster-tickets").innerHTML = "<div>" + esc(C.fmt("clusters.tickets", { area: c.area_name, cat: categoryName(c.category),
      n: c.numbers.length })) + "</div>" + c.numbers.map(function (n) {
        return '<button class="link" data-cluster-ticket="' + esc(n) + '">' + esc(n) + "</button>";
      }).join(" ");
    el("clusters").dataset.selected = selected;
    renderClusters();
  }
  function loadClusters() {
    if (C.reviewer) { return; }  // a reviewer's console: its review queue only
    api("GET", "/api/hotspots/clusters?" + params({ window_days: el("cl-window").value, area: el("cl-area").value }))
      .then(function (res) {
        if (!res.ok || !res.body) { el("cluster-count").textContent = t("common.none"); return; }
        clusters = res.body.clusters;
        fillCategories(res.body.categories);
        var still = clusters.filter(function (c) { return c.area_id + ":" + c.category === selected; })[0];
        if (selected && !still) { selected = null; clusterLayer.clearLayers(); el("cluster-tickets").innerHTML = ""; }
        renderClusters();
      });
  }
  el("cluster-rows").addEventListener("click", function (ev) {
    var row = ev.target.closest("[data-index]");
    if (row) { showCluster(clusters[Number(row.getAttribute("data-index"))]); }
  });
  el("cluster-tickets").addEventListener("click", function (ev) {
    var n = ev.target.getAttribute && ev.target.getAttribute("data-cluster-ticket");
    if (n) { C.emit("open-ticket", n); }
  });
  ["hs-period", "hs-category"].forEach(function (id) { el(id).addEventListener("change", loadHeat); });
  ["hs-category", "cl-window", "cl-area"].forEach(function (id) { el(id).addEventListener("change", loadClusters); });
  C.on("lang", function () { renderSummary(); renderLegend(); renderClusters(); categories = null; loadClusters(); });
  C.hotspots = { heatLayer: heatLayer, clusterLayer: clusterLayer };
  renderSummary();
  loadClusters();
  setInterval(function () { loadHeat(); loadClusters(); }, REFRESH_MS);
})();
