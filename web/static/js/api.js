// The one JSON fetch helper of every page (window.Api). Pages use the session cookie (same
// origin) and send the _xsrf cookie value as X-XSRFToken on state-changing requests; a JSON body,
// FormData or a Blob may be sent. A reply is {ok, status, body} with body the parsed JSON (null
// when there is none); errors have the server's shape {"error": {"code", "message", ...}}. A 401
// sends the browser to the login page and back.
(function () {
  "use strict";
  function xsrf() {
    var m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    if (m) { return decodeURIComponent(m[1]); }
    var input = document.querySelector("input[name=_xsrf]");
    return input ? input.value : "";
  }
  function toLogin() {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  function reply(r) {
    if (r.status === 401) { toLogin(); }
    return r.text().then(function (text) {
      var body = null;
      try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
      return { ok: r.ok, status: r.status, body: body };
    });
  }
  // fetch JSON; rejects only when there is no connection (the caller may keep the work for later)
  function request(method, url, payload, headers) {
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    Object.keys(headers || {}).forEach(function (k) { init.headers[k] = headers[k]; });
    if (method !== "GET" && method !== "HEAD") { init.headers["X-XSRFToken"] = xsrf(); }
    if (payload instanceof FormData || payload instanceof Blob) { init.body = payload; }
    else if (payload !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(payload); }
    return fetch(url, init).then(reply);
  }
  // the same, never rejecting: no connection is {ok: false, status: 0, body: null}
  function quiet(method, url, payload, headers) {
    return request(method, url, payload, headers).catch(function () { return { ok: false, status: 0, body: null }; });
  }
  // the error object of a reply ({code, message, field...}), {} when there is none
  function error(res) { return (res && res.body && res.body.error) || {}; }
  // the error message of a reply, or its status
  function message(res) { return error(res).message || String(res ? res.status : ""); }
  window.Api = { request: request, quiet: quiet, error: error, message: message, xsrf: xsrf };
})();
