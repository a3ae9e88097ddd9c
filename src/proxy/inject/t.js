/* tollgate tracker: single-page-app views, tagged clicks, outbound links, downloads, form
   submits and engagement. No cookies and no ids of its own: the proxy knows the visitor.
   Full page loads are counted by the proxy, so this never reports the first view.
   Form field values are never read. */
(function (w, d) {
  var C = /*CONFIG*/ {}, n = w.navigator, L = w.location, E = C.prefix + "/e";
  if (w.__tollgate) return;
  w.__tollgate = 1;
  if ((C.gpc && n.globalPrivacyControl) || (C.dnt && (n.doNotTrack == "1" || w.doNotTrack == "1"))) return;

  function send(e) {
    e.url = e.url || L.href;
    var body = JSON.stringify(e);
    try {
      if (n.sendBeacon && n.sendBeacon(E, body)) return;
    } catch (x) {}
    try {
      fetch(E, { method: "POST", body: body, keepalive: true, credentials: "same-origin", headers: { "Content-Type": "text/plain" } })["catch"](function () {});
    } catch (x) {}
  }
  function track(name, props, url) {
    send({ name: name, props: props, url: url });
  }

  // The page as tollgate records it: path and query, plus the hash for hash routers (#/, #!).
  function here() {
    return L.pathname + L.search + (/^#[!\/]/.test(L.hash) ? L.hash : "");
  }
  var page = here(), pageUrl = L.href;

  // Engagement: visible time and the deepest scroll, reported when the page is left.
  var shown = d.visibilityState == "visible" ? Date.now() : 0, engaged = 0, depth = 0;
  function scrolled() {
    var h = d.documentElement, max = h.scrollHeight - w.innerHeight;
    var pct = max > 0 ? Math.round(Math.min(1, (w.scrollY || h.scrollTop) / max) * 100) : 100;
    if (pct > depth) depth = pct;
  }
  function flush() {
    if (shown) engaged += Date.now() - shown;
    shown = d.visibilityState == "visible" ? Date.now() : 0;
    if (C.engagement && engaged >= 1000) track("engagement", { engaged_ms: engaged, scroll_pct: depth }, pageUrl);
    engaged = 0;
  }
  if (C.engagement) {
    scrolled();
    w.addEventListener("scroll", scrolled, { passive: true });
    d.addEventListener("visibilitychange", flush);
    w.addEventListener("pagehide", flush);
  }

  // Single-page-app navigations. replaceState counts only when the path itself changes:
  // stripping utm_ parameters, a trailing slash or "#/" after a load is not a new page.
  function bare(p) {
    return p.replace(/\?[^#]*/, "").replace(/#!?\/?$/, "").replace(/(.)\/$/, "$1");
  }
  function view(replaced) {
    try {
      var now = here();
      if (now == page) return;
      if (replaced && bare(now) == bare(page)) {
        page = now;
        pageUrl = L.href;
        return;
      }
      flush();
      send({ name: "page_view", referrer: pageUrl });
      page = now;
      pageUrl = L.href;
      depth = 0;
      scrolled();
    } catch (x) {}
  }
  ["pushState", "replaceState"].forEach(function (m) {
    var orig = history[m];
    history[m] = function () {
      var r = orig.apply(this, arguments);
      view(m == "replaceState");
      return r;
    };
  });
  w.addEventListener("popstate", function () {
    view();
  });
  w.addEventListener("hashchange", function () {
    view();
  });
  // A page restored from the back-forward cache never reached the proxy.
  w.addEventListener("pageshow", function (e) {
    if (e.persisted) send({ name: "page_view", referrer: d.referrer });
  });

  // Clicks: data-tg-event elements, outbound links, downloads.
  var FILES = /\.(pdf|zip|gz|tgz|rar|7z|dmg|exe|msi|pkg|deb|rpm|apk|iso|csv|xlsx?|docx?|pptx?|odt|ods|txt|mp3|mp4|mov|avi|wav|epub)$/i;
  function clicked(e) {
    var t = e.target;
    if (!t || !t.closest) return;
    var el = t.closest("[data-tg-event]");
    if (el) {
      var props = {}, a = el.attributes;
      for (var i = 0; i < a.length; i++)
        if (a[i].name.indexOf("data-tg-prop-") == 0) props[a[i].name.slice(13)] = a[i].value;
      track(el.getAttribute("data-tg-event"), props);
    }
    var link = t.closest("a[href]");
    if (!link) return;
    var u;
    try {
      u = new URL(link.href, L.href);
    } catch (x) {
      return;
    }
    if (!/^https?:$/.test(u.protocol)) return;
    var where = u.origin + u.pathname, ext = u.pathname.match(FILES);
    if (link.hasAttribute("download") || ext) track("file_download", { url: where, ext: ext ? ext[1].toLowerCase() : "" });
    else if (u.origin != L.origin) track("outbound_click", { url: where });
  }
  d.addEventListener("click", clicked, true);
  d.addEventListener("auxclick", function (e) {
    if (e.button == 1) clicked(e);
  }, true);

  // Form submits: which form, never what was typed.
  d.addEventListener("submit", function (e) {
    var f = e.target, act = f.getAttribute("action") || "", u;
    try {
      u = new URL(act, L.href);
      act = u.origin == L.origin ? u.pathname : u.origin + u.pathname;
    } catch (x) {
      act = "";
    }
    track("form_submit", { form_id: f.getAttribute("id") || "", form_name: f.getAttribute("name") || "", form_action: act });
  }, true);
})(window, document);
