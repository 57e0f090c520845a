/* wattkeeper dashboard: live panels over SSE, JSON posts to the API, toasts, charts. No build step. */
(function () {
  "use strict";

  // Going back re-renders the page from the server: live data, not a stale snapshot.
  htmx.config.historyCacheSize = 0;
  htmx.config.refreshOnHistoryMiss = true;

  const LIVE_KINDS = ["alarm", "alarm_flood", "device", "room", "supply", "sweep", "command", "override"];
  const COALESCE_MS = 1000; // at most one refresh per panel per second, whatever the event rate
  const BUSY_RETRY_MS = 3000;

  function labels() {
    const el = document.getElementById("labels");
    return el ? JSON.parse(el.textContent) : {};
  }

  // -- JSON bodies for the API ---------------------------------------------------------------
  // Form fields become a JSON object; hx-vals keep their JSON types; a `hours` field becomes
  // `until` (an ISO time that many hours from now), which is what overrides and shelving take.
  let internal;
  htmx.defineExtension("wk-json", {
    init: function (api) { internal = api; },
    onEvent: function (name, evt) {
      if (name !== "htmx:configRequest") return;
      evt.detail.headers["Content-Type"] = "application/json";
      // Supply-side equipment: the reason typed into the hx-prompt goes into the body.
      const reason = evt.detail.headers["HX-Prompt"];
      if (evt.detail.elt.hasAttribute("data-reason") && reason !== undefined) evt.detail.parameters.reason = reason;
    },
    encodeParameters: function (xhr, parameters, elt) {
      xhr.overrideMimeType("text/json");
      const out = {};
      parameters.forEach(function (value, key) { out[key] = value; });
      const vals = internal.getExpressionVars(elt);
      Object.keys(vals).forEach(function (key) { out[key] = vals[key]; });
      if ("hours" in out) {
        out.until = new Date(Date.now() + Number(out.hours) * 3600e3).toISOString();
        delete out.hours;
      }
      return JSON.stringify(out);
    },
  });

  // -- toasts ------------------------------------------------------------------------------------
  function toast(text, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const el = document.createElement("div");
    el.className = "toast" + (kind === "error" ? " error" : "");
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.textContent = text;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, kind === "error" ? 8000 : 4000);
  }

  window.wkToast = toast; // for controls.js

  function parse(xhr) {
    try { return JSON.parse(xhr.responseText); } catch (e) { return null; }
  }

  function outcome(body) {
    const l = labels();
    if (body && typeof body === "object") {
      if (body.status) {
        const name = body.status === "failed" ? l.failed_cmd : l[body.status];
        const seen = body.observed === true ? l.on : body.observed === false ? l.off : body.observed;
        return (name || body.status) + (seen !== undefined && seen !== null ? " · " + (typeof seen === "string" ? (l.modes && l.modes[seen]) || seen : JSON.stringify(seen)) : "");
      }
      if (body.counts) {
        const actions = l.actions || {};
        return l.done + " · " + Object.entries(body.counts).map(function (e) { return (actions[e[0]] || e[0]) + " " + e[1]; }).join(" · ");
      }
    }
    return l.done;
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    const verb = evt.detail.requestConfig && evt.detail.requestConfig.verb;
    if (!evt.detail.successful || verb === "get") return;
    const body = parse(evt.detail.xhr);
    const failed = body && (body.status === "failed" || body.status === "refused");
    toast(outcome(body), failed ? "error" : "ok");
    refreshAll();
  });

  document.addEventListener("htmx:responseError", function (evt) {
    const xhr = evt.detail.xhr;
    if (xhr.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      return;
    }
    const body = parse(xhr);
    toast(xhr.status + " · " + ((body && body.detail) || xhr.statusText || labels().failed), "error");
  });

  // A request that cannot reach the service is the stale-data banner's business (stale.js): one
  // banner for an outage, not a toast per failed refresh.
  document.addEventListener("htmx:sendError", function () { document.dispatchEvent(new CustomEvent("wk:down")); });

  // -- live panels ---------------------------------------------------------------------------------
  // Elements with data-live="alarm room ..." are refreshed (htmx trigger `refresh`) after those
  // events, coalesced; a panel someone is typing or choosing in waits until they are done. Open
  // <details> survive a refresh through hx-preserve, so they never hold one up.
  const queued = new Set();
  let timer = null;

  function schedule(kind, delay) {
    queued.add(kind);
    if (!timer) timer = setTimeout(flush, delay || COALESCE_MS);
  }

  function busy(el) {
    const active = document.activeElement;
    return Boolean(active && active !== document.body && el.contains(active) && active.matches("input, select, textarea"));
  }

  function flush() {
    timer = null;
    const kinds = Array.from(queued);
    queued.clear();
    document.querySelectorAll("[data-live]").forEach(function (el) {
      const wants = el.dataset.live.split(" ").filter(function (k) { return kinds.indexOf(k) >= 0; });
      if (!wants.length) return;
      if (busy(el)) {
        wants.forEach(function (k) { schedule(k, BUSY_RETRY_MS); });
        return;
      }
      htmx.trigger(el, "refresh");
    });
  }

  function refreshAll() { LIVE_KINDS.forEach(function (k) { schedule(k, 300); }); }

  function setLive(state) {
    const el = document.getElementById("live");
    if (!el) return;
    el.className = "live " + state;
    el.textContent = state === "on" ? el.dataset.on : el.dataset.off;
  }

  // Reconnect with backoff: 1 s, 2 s, 4 s ... at most 30 s; stale.js is told up and down.
  let backoffMs = 1000;
  let wasDown = false;

  function stream(up, retryMs) {
    document.dispatchEvent(new CustomEvent("wk:stream", { detail: { up: up, retryMs: retryMs || 0 } }));
  }

  let current = null;

  // The service cannot be reached (stale.js polls it) while the stream still looks open: a
  // half-dead connection that only a keepalive would expose, 15 s later. Drop it and reconnect.
  document.addEventListener("wk:unreachable", function () {
    if (current && current.readyState !== EventSource.CLOSED && current.onerror) current.onerror();
  });

  function connect() {
    // Same-origin EventSource sends the session cookie; it cannot send an Authorization header.
    const source = new EventSource("/api/events");
    current = source;
    source.addEventListener("hello", function () {
      setLive("on");
      backoffMs = 1000;
      stream(true);
      if (wasDown) refreshAll(); // events were missed while away
      wasDown = false;
    });
    source.onerror = function () {
      if (source !== current) return;
      current = null;
      wasDown = true;
      setLive("off");
      // Our own retry instead of the browser's fixed one: back off, and ask why when it keeps failing
      // (a 401 after the session ended sends the page to the login).
      source.close();
      const wait = backoffMs;
      backoffMs = Math.min(backoffMs * 2, 30000);
      stream(false, wait);
      setTimeout(function () {
        fetch("/ui/badge").then(function (r) {
          if (r.status === 401) location.href = "/login";
          else connect();
        }, function () { connect(); });
      }, wait);
    };
    LIVE_KINDS.forEach(function (kind) {
      source.addEventListener(kind, function () { schedule(kind); });
    });
  }

  // -- tabs ------------------------------------------------------------------------------------------
  document.addEventListener("click", function (evt) {
    const link = evt.target.closest && evt.target.closest(".tabs a");
    if (!link) return;
    document.querySelectorAll(".tabs a").forEach(function (a) { a.removeAttribute("aria-current"); });
    link.setAttribute("aria-current", "page");
    // The language switch reloads the page: keep the panel being looked at.
    const lang = document.querySelector("a.lang");
    if (lang) lang.href = "/?view=" + link.dataset.view + "&lang=" + lang.dataset.lang;
  });

  // -- charts (uPlot) --------------------------------------------------------------------------------
  const COLORS = ["#1d5fbf", "#1a7f37", "#e0580c", "#8e5bd6", "#0891b2", "#c98a04"];
  // Every chart of the page (trend.js's bars too): each element drawn once, its chart let go when a
  // refresh swaps its panel out, and resized with the window.
  let plots = [];

  function drawCharts(root, attr, height, draw) {
    plots = plots.filter(function (p) {
      if (document.body.contains(p.el)) return true;
      p.plot.destroy();
      return false;
    });
    root.querySelectorAll(".chart[data-" + attr + "]").forEach(function (el) {
      if (el.dataset.drawn) return;
      el.dataset.drawn = "1";
      const plot = draw(el, JSON.parse(el.dataset[attr]));
      if (plot) plots.push({ el: el, plot: plot, height: height });
    });
  }
  window.wkDrawCharts = drawCharts; // for trend.js

  window.addEventListener("resize", function () {
    plots.forEach(function (p) {
      if (document.body.contains(p.el)) p.plot.setSize({ width: p.el.clientWidth, height: p.height });
    });
  });

  function charts(root) {
    drawCharts(root, "chart", 240, function (el, data) {
      if (!data.x.length || !data.series.length) return null;
      const tz = el.dataset.tz;
      const hhmm = uPlot.fmtDate("{HH}:{mm}");
      const local = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), tz); };
      const opts = {
        width: el.clientWidth || 600,
        height: 240,
        // The site's clock, whatever the browser's time zone; 24-hour times as on site.
        tzDate: local,
        scales: { x: { time: true } },
        axes: [
          { values: function (u, splits) { return splits.map(function (v) { return hhmm(local(v)); }); } },
          { label: "kW", size: 56 },
        ],
        series: [{ label: el.dataset.xLabel, value: function (u, v) { return v == null ? "—" : hhmm(local(v)); } }].concat(data.series.map(function (s, i) {
          return { label: s.label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: false } };
        })),
      };
      return new uPlot(opts, [data.x].concat(data.series.map(function (s) { return s.values; })), el);
    });
  }

  htmx.onLoad(charts);
  if (document.getElementById("live")) connect();
})();
