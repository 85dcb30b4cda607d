// Simplified Chinese by default, English as a switch (remembered in localStorage).
(function () {
  "use strict";
  var STRINGS = {
    en: {
      "app.title": "Dispatch Command Center",
      "login.user": "User name", "login.password": "Password", "login.submit": "Log in",
      "login.error.bad_credentials": "Wrong user name or password",
      "login.error.throttled": "Too many failed logins; try again in 15 minutes",
      "logout": "Log out",
      "role.agent": "Call agent", "role.dispatcher": "Dispatcher", "role.crew": "Crew",
      "role.supervisor": "Supervisor", "role.admin": "Administrator",
      "live.disconnected": "Live connection lost, reconnecting…",
      "vehicles.title": "Vehicles", "vehicles.online": "online", "vehicles.stale": "stale",
      "vehicles.offline": "offline", "vehicles.id": "Vehicle", "vehicles.speed": "Speed (km/h)",
      "vehicles.fix_time": "Fix time",
      "state.online": "online", "state.stale": "stale", "state.offline": "offline",
      "layer.districts": "Districts", "layer.roads": "Roads", "layer.grids": "Grids",
      "layer.streets": "Streets", "layer.units": "Unit areas", "layer.supply_areas": "Supply areas",
      "layer.dmas": "DMAs", "layer.stations": "Stations", "layer.transformers": "Transformers",
      "layer.mains": "Water mains", "layer.valves": "Valves", "layer.sensors": "Sensors",
      "lang.switch": "中文"
    },
    zh: {
      "app.title": "调度指挥中心",
      "login.user": "用户名", "login.password": "密码", "login.submit": "登录",
      "login.error.bad_credentials": "用户名或密码错误",
      "login.error.throttled": "登录失败次数过多，请15分钟后再试",
      "logout": "退出",
      "role.agent": "坐席", "role.dispatcher": "调度员", "role.crew": "班组",
      "role.supervisor": "班长/主任", "role.admin": "管理员",
      "live.disconnected": "实时连接已断开，正在重连…",
      "vehicles.title": "车辆", "vehicles.online": "在线", "vehicles.stale": "信号延迟",
      "vehicles.offline": "离线", "vehicles.id": "车辆", "vehicles.speed": "速度 (km/h)",
      "vehicles.fix_time": "定位时间",
      "state.online": "在线", "state.stale": "信号延迟", "state.offline": "离线",
      "layer.districts": "行政区", "layer.roads": "道路", "layer.grids": "社区网格",
      "layer.streets": "街道", "layer.units": "责任单位辖区", "layer.supply_areas": "供电台区",
      "layer.dmas": "供水分区(DMA)", "layer.stations": "站所", "layer.transformers": "变压器",
      "layer.mains": "供水管网", "layer.valves": "阀门", "layer.sensors": "监测点",
      "lang.switch": "English"
    }
  };
  function lang() { return localStorage.getItem("lang") === "en" ? "en" : "zh"; }
  function t(key) { var s = STRINGS[lang()]; return (s && s[key]) || STRINGS.zh[key] || key; }
  function apply(root) {
    (root || document).querySelectorAll("[data-i18n]").forEach(function (el) {
      var key = el.getAttribute("data-i18n");
      if (STRINGS.zh[key]) { el.textContent = t(key); }
    });
    document.querySelectorAll("[data-lang-toggle]").forEach(function (el) { el.textContent = t("lang.switch"); });
    document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
  }
  document.addEventListener("click", function (ev) {
    var el = ev.target.closest && ev.target.closest("[data-lang-toggle]");
    if (!el) { return; }
    ev.preventDefault();
    localStorage.setItem("lang", lang() === "en" ? "zh" : "en");
    apply();
    document.dispatchEvent(new CustomEvent("langchange"));
  });
  window.I18N = { t: t, apply: apply, lang: lang };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", function () { apply(); }); }
  else { apply(); }
})();
