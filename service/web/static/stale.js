/* wattkeeper dashboard: stale data shown as stale (issue 18).
 *
 * Two signs that what a panel shows is old:
 * - the event stream is down (app.js tells with `wk:stream`, and `wk:down` when a request could not
 *   reach the service) or /ui/freshness cannot be fetched: every panel greys out;
 * - /ui/freshness (polled every POLL_MS) says a panel's devices have not reported for three of
 *   their poll periods: that panel greys out.
 * A grey panel carries "最后更新 HH:MM:SS" (site time) and the page ONE banner; all of it goes when
 * data flows again.
 */
(function () {
  "use strict";

  const POLL_MS = 3000;
  const GRACE_MS = 1500; // a stream that comes straight back is not an outage
  const loadedAt = new WeakMap(); // panel -> Date it was last rendered
  let streamUp = true;
  let reachable = true;
  let staleByData = {}; // panel name -> site-time "HH:MM:SS" of its newest good data
  let downTimer = null;

  function hms(date) {
    const tz = document.body.dataset.tz || undefined;
    return new Intl.DateTimeFormat("en-GB", {
      timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    }).format(date);
  }

  function stamp(root) {
    const now = new Date();
    const panels = root.matches && root.matches("section.panel") ? [root] : [];
    (root.querySelectorAll ? root.querySelectorAll("section.panel") : []).forEach(function (p) { panels.push(p); });
    panels.forEach(function (p) { loadedAt.set(p, now); });
    paint();
  }

  function note(panel, text) {
    let el = panel.querySelector(":scope > .stale-note");
    if (!text) {
      if (el) el.remove();
      panel.classList.remove("stale");
      return;
    }
    if (!el) {
      el = document.createElement("p");
      el.className = "stale-note";
      panel.prepend(el);
    }
    el.textContent = text;
    panel.classList.add("stale");
  }

  function paint() {
    const banner = document.getElementById("stale-banner");
    if (!banner) return;
    const allDown = !streamUp || !reachable;
    const template = banner.dataset.last;
    let any = false;
    document.querySelectorAll("main section.panel").forEach(function (panel) {
      const name = (panel.id || "").replace(/^panel-/, "");
      let last = null;
      if (allDown) last = hms(loadedAt.get(panel) || new Date());
      else if (staleByData[name]) last = staleByData[name];
      note(panel, last ? template.replace("{hms}", last) : "");
      any = any || Boolean(last);
    });
    banner.hidden = !any;
    document.body.classList.toggle("stale", any);
  }

  function down() {
    if (downTimer) return;
    downTimer = setTimeout(function () { downTimer = null; if (!streamUp || !reachable) paint(); }, GRACE_MS);
  }

  document.addEventListener("wk:stream", function (evt) {
    streamUp = evt.detail.up;
    if (streamUp) paint();
    else down();
  });

  document.addEventListener("wk:down", function () { reachable = false; paint(); });

  function poll() {
    fetch("/ui/freshness", { headers: { "HX-Request": "true" }, cache: "no-store" }).then(function (r) {
      if (r.status === 401) { location.href = "/login"; return null; }
      if (!r.ok) throw new Error(String(r.status));
      return r.json();
    }).then(function (body) {
      if (!body) return;
      reachable = true;
      staleByData = {};
      Object.keys(body.panels || {}).forEach(function (name) {
        const p = body.panels[name];
        if (p.stale) staleByData[name] = p.last || "—";
      });
      paint();
    }, function () {
      reachable = false;
      document.dispatchEvent(new CustomEvent("wk:unreachable"));
      paint();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!document.getElementById("stale-banner")) return;
    stamp(document);
    setInterval(poll, POLL_MS);
    poll();
  });
  htmx.onLoad(stamp);
})();
