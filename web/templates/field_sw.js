// Service worker of the field page (外勤), served as /field/sw.js with scope /field
// (web/handlers/pages.py FieldServiceWorker fills in the version and the shell).
//
// It precaches the page's shell (the page itself, its scripts and styles, the vendored Leaflet,
// the icon) in a cache named by the shell's version: a deploy brings a new version, the new
// worker fills a new cache and drops the old ones. Shell requests go to the network first (and
// refresh the cache) and fall back to the cache when the network fails; while the browser reports
// no connection they are served from the cache first. Nothing else passes through here: the page
// keeps its tickets and its queue of actions in localStorage itself, API calls always go out.
"use strict";
var VERSION = "{{ version }}";
var PREFIX = "field-shell-";
var CACHE = PREFIX + VERSION;
var PAGE = "/field";
var SHELL = {% raw shell %};

function precache(cache) {  // like cache.addAll, but a redirect (to the login page) is a failure
  return Promise.all([PAGE].concat(SHELL).map(function (url) {
    return fetch(url, { credentials: "same-origin", cache: "no-cache" }).then(function (response) {
      if (!response.ok || response.redirected) { throw new Error("precache " + url + ": " + response.status); }
      return cache.put(url, response);
    });
  }));
}

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(precache).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) { return k.indexOf(PREFIX) === 0 && k !== CACHE; })
      .map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});

function shellKey(request) {  // the cache key of a shell request, or null for anything else
  var url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) { return null; }
  if (url.pathname === PAGE) { return PAGE; }
  var path = url.pathname + url.search;
  return SHELL.indexOf(path) >= 0 ? path : null;
}

function cached(key) {
  return caches.open(CACHE).then(function (cache) { return cache.match(key); });
}

function networkFirst(event, key) {
  return fetch(event.request).then(function (response) {
    if (response.ok && response.type === "basic" && !response.redirected) {
      var copy = response.clone();
      event.waitUntil(caches.open(CACHE).then(function (cache) { return cache.put(key, copy); }));
    }
    return response;
  }, function (failure) {
    return cached(key).then(function (hit) { if (hit) { return hit; } throw failure; });
  });
}

self.addEventListener("fetch", function (event) {
  var key = shellKey(event.request);
  if (!key) { return; }
  if (self.navigator.onLine === false) {
    event.respondWith(cached(key).then(function (hit) { return hit || fetch(event.request); }));
    return;
  }
  event.respondWith(networkFirst(event, key));
});
