/* wattkeeper dashboard: trends and the energy explorer's bars (issue 18), with the vendored uPlot.
 *
 * Click a room's name on its card, a source or generator on the single-line diagram, or anything
 * with data-trend="kind:id": a dialog opens with that thing's chart over 24 h / 7 d / 30 d / 12 months
 * from /ui/trend, with the note the answer may carry (a long range without InfluxDB's history).
 * `.chart[data-bars]` elements (the explorer) get stacked kWh bars by tariff band.
 */
(function () {
  "use strict";

  const COLORS = ["#1d5fbf", "#e0580c", "#1a7f37", "#8e5bd6", "#0891b2", "#c98a04"];
  const BAND_COLORS = ["#e4572e", "#f2b134", "#4f9d69", "#8e5bd6"];
  const RANGES = ["24h", "7d", "30d", "12m"];
  let plot = null;

  function text(key) {
    const el = document.getElementById("trend-labels");
    return (el && el.dataset[key]) || key;
  }

  function tz() { return document.body.dataset.tz; }

  function fmt(span) {
    const opts = span === "24h" ? { hour: "2-digit", minute: "2-digit", hour12: false }
      : span === "12m" ? { year: "numeric", month: "2-digit" }
        : { month: "2-digit", day: "2-digit", hour: span === "7d" ? "2-digit" : undefined, hour12: false };
    opts.timeZone = tz();
    const f = new Intl.DateTimeFormat(document.documentElement.lang || "zh-CN", opts);
    return function (ts) { return ts == null ? "—" : f.format(new Date(ts * 1e3)); };
  }

  function dialog() {
    let d = document.getElementById("trend");
    if (d) return d;
    d = document.createElement("dialog");
    d.id = "trend";
    d.className = "trend";
    const head = document.createElement("div");
    head.className = "trend-head";
    const h = document.createElement("h2");
    h.className = "trend-title";
    const close = document.createElement("button");
    close.type = "button";
    close.className = "btn small";
    close.textContent = text("close");
    close.addEventListener("click", function () { d.close(); });
    head.append(h, close);
    const ranges = document.createElement("div");
    ranges.className = "trend-ranges";
    RANGES.forEach(function (r) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "btn small";
      b.dataset.range = r;
      b.textContent = text("r" + r);
      b.addEventListener("click", function () { load(d.dataset.kind, d.dataset.id, r); });
      ranges.appendChild(b);
    });
    const status = document.createElement("p");
    status.className = "trend-status muted small";
    // Why a long range shows only what the service keeps (no InfluxDB, or InfluxDB not answering).
    const note = document.createElement("p");
    note.className = "trend-note notice small";
    note.setAttribute("role", "note");
    note.hidden = true;
    const chart = document.createElement("div");
    chart.className = "trend-chart";
    d.append(head, ranges, status, note, chart);
    d.addEventListener("close", function () { if (plot) { plot.destroy(); plot = null; } });
    document.body.appendChild(d);
    return d;
  }

  function load(kind, id, span) {
    const d = dialog();
    d.dataset.kind = kind;
    d.dataset.id = id;
    d.dataset.range = span;
    d.dataset.state = "loading";
    d.querySelectorAll(".trend-ranges button").forEach(function (b) {
      b.setAttribute("aria-pressed", b.dataset.range === span ? "true" : "false");
    });
    d.querySelector(".trend-status").textContent = text("loading");
    d.querySelector(".trend-note").hidden = true;
    if (!d.open) d.showModal();
    const q = "/ui/trend?kind=" + encodeURIComponent(kind) + "&id=" + encodeURIComponent(id) + "&range=" + span;
    fetch(q, { headers: { "HX-Request": "true" } }).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) throw new Error(body.detail || r.status); return body; });
    }).then(function (body) { draw(d, body, span); }, function (err) {
      d.dataset.state = "error";
      d.querySelector(".trend-status").textContent = String(err.message || err);
    });
  }

  function draw(d, body, span) {
    d.querySelector(".trend-title").textContent = text("title") + " · " + body.title;
    const el = d.querySelector(".trend-chart");
    if (plot) { plot.destroy(); plot = null; }
    const points = body.series.reduce(function (n, s) { return n + s.values.filter(function (v) { return v != null; }).length; }, 0);
    d.dataset.points = String(points);
    d.dataset.state = "drawn";
    d.querySelector(".trend-status").textContent = points ? "" : text("noData");
    const note = d.querySelector(".trend-note");
    note.textContent = body.note || "";
    note.hidden = !body.note;
    const units = [];
    body.series.forEach(function (s) { if (units.indexOf(s.unit) < 0) units.push(s.unit); });
    const label = fmt(span);
    const scales = { x: { time: true } };
    const axes = [{ values: function (u, splits) { return splits.map(label); } }];
    units.forEach(function (unit, i) {
      scales[unit || "y"] = {};
      axes.push({ scale: unit || "y", label: unit, side: i === 0 ? 3 : 1, size: 56, grid: { show: i === 0 } });
    });
    const opts = {
      width: Math.max(el.clientWidth, 280),
      height: Math.min(320, Math.round(window.innerHeight * 0.45)),
      scales: scales,
      axes: axes,
      series: [{ label: text("at"), value: function (u, v) { return label(v); } }].concat(body.series.map(function (s, i) {
        return { label: s.label, scale: s.unit || "y", stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, points: { show: false } };
      })),
    };
    plot = new uPlot(opts, [body.x].concat(body.series.map(function (s) { return s.values; })), el);
  }

  document.addEventListener("click", function (evt) {
    const t = evt.target;
    if (!t.closest) return;
    const tagged = t.closest("[data-trend]");
    if (tagged) {
      const parts = tagged.dataset.trend.split(":");
      load(parts[0], parts.slice(1).join(":"), "24h");
      return;
    }
    const roomName = t.closest("article.room > header h3");
    if (roomName) {
      load("room", roomName.closest("article.room").dataset.room, "24h");
      return;
    }
    const node = t.closest(".sld [data-node]");
    if (node) {
      const gen = node.querySelector(".node-sym") && node.querySelector(".node-sym").textContent.trim() === "G";
      load(gen ? "generator" : "source", node.dataset.node, "24h");
    }
  });

  // -- explorer bars -------------------------------------------------------------------------------
  function drawBars(root) {
    window.wkDrawCharts(root, "bars", 220, function (el, data) {
      const n = data.labels.length;
      const xs = data.labels.map(function (_, i) { return i; });
      // Stacked: each band drawn as the running total up to it, the tallest first.
      const cumulative = [];
      let running = new Array(n).fill(0);
      data.series.forEach(function (s) {
        running = running.map(function (v, i) { return v + (s.values[i] || 0); });
        cumulative.push(running.slice());
      });
      const order = data.series.map(function (_, i) { return i; }).reverse();
      const barPaths = uPlot.paths.bars({ size: [0.7, 40] });
      const opts = {
        width: Math.max(el.clientWidth, 280),
        height: 220,
        scales: { x: { time: false, range: [-0.5, n - 0.5] } },
        axes: [
          { values: function (u, splits) { return splits.map(function (v) { return Number.isInteger(v) ? data.labels[v] || "" : ""; }); } },
          { label: el.dataset.unit, size: 56 },
        ],
        legend: { live: true },
        series: [{ label: el.dataset.xLabel, value: function (u, v) { return v == null ? "—" : data.labels[v] || ""; } }].concat(order.map(function (i) {
          const raw = data.series[i].values;
          return {
            label: data.series[i].label,
            fill: BAND_COLORS[i % BAND_COLORS.length],
            stroke: BAND_COLORS[i % BAND_COLORS.length],
            paths: barPaths,
            points: { show: false },
            value: function (u, v, si, idx) { return idx == null ? "—" : (raw[idx] || 0).toFixed(1); },
          };
        })),
      };
      return new uPlot(opts, [xs].concat(order.map(function (i) { return cumulative[i]; })), el);
    });
  }

  htmx.onLoad(drawBars);
})();
