/* wattkeeper dashboard: room controls (issue 18).
 *
 * An AC's mode and setpoint from its room card, within the office rule (cooling not below
 * cooling_min_c, heating not above heating_max_c: the form says so before sending, the service
 * refuses it anyway); "all off" for a room after a confirmation, device by device through the same
 * audited command API with readback, one toast with the outcome.
 */
(function () {
  "use strict";

  function labels() {
    const el = document.getElementById("labels");
    return el ? JSON.parse(el.textContent) : {};
  }

  function say(text, kind) { if (window.wkToast) window.wkToast(text, kind); }

  function command(device, name, value) {
    return fetch("/api/devices/" + encodeURIComponent(device) + "/commands", {
      method: "POST",
      headers: { "Content-Type": "application/json", "HX-Request": "true" },
      body: JSON.stringify({ command: name, value: value }),
    }).then(function (r) {
      return r.json().then(function (body) {
        return { ok: r.ok, status: body.status || (r.ok ? "confirmed" : "refused"), detail: body.detail || "" };
      }, function () { return { ok: false, status: "failed", detail: String(r.status) }; });
    }, function () { return { ok: false, status: "failed", detail: "network" }; });
  }

  function word(status) {
    const l = labels();
    return status === "failed" ? l.failed_cmd : l[status] || status;
  }

  function limit(form) {
    const mode = form.elements.mode.value;
    const input = form.elements.setpoint;
    input.removeAttribute("min");
    input.removeAttribute("max");
    input.setCustomValidity("");
    const v = Number(input.value);
    if (mode === "cool" && v < Number(form.dataset.coolMin)) input.setCustomValidity(form.dataset.below);
    if (mode === "heat" && v > Number(form.dataset.heatMax)) input.setCustomValidity(form.dataset.above);
  }

  document.addEventListener("input", function (evt) {
    const form = evt.target.closest && evt.target.closest("form.ac-form");
    if (form) limit(form);
  });

  document.addEventListener("submit", function (evt) {
    const form = evt.target.closest && evt.target.closest("form.ac-form");
    if (!form) return;
    evt.preventDefault();
    limit(form);
    if (!form.reportValidity()) return;
    const device = form.dataset.device;
    const mode = form.elements.mode.value;
    const setpoint = Number(form.elements.setpoint.value);
    command(device, "system_mode", mode).then(function (first) {
      if (first.status !== "confirmed" || (mode !== "cool" && mode !== "heat")) return first;
      return command(device, mode === "cool" ? "cooling_setpoint" : "heating_setpoint", setpoint);
    }).then(function (outcome) {
      const ok = outcome.status === "confirmed";
      say(word(outcome.status) + (ok ? " · " + device : " · " + outcome.detail), ok ? "ok" : "error");
    });
  });

  document.addEventListener("click", function (evt) {
    const button = evt.target.closest && evt.target.closest("button.all-off");
    if (!button) return;
    if (!window.confirm(button.dataset.confirm)) return;
    const controls = Array.from(button.closest("details").querySelectorAll(".control[data-device]"));
    button.disabled = true;
    const tally = {};
    controls.reduce(function (chain, el) {
      return chain.then(function () {
        const off = el.dataset.kind === "ac" ? ["system_mode", "off"] : ["on", false];
        return command(el.dataset.device, off[0], off[1]).then(function (o) { tally[o.status] = (tally[o.status] || 0) + 1; });
      });
    }, Promise.resolve()).then(function () {
      button.disabled = false;
      const parts = Object.keys(tally).map(function (k) { return word(k) + " " + tally[k]; });
      say(button.dataset.done + " · " + parts.join(" · "), tally.confirmed === controls.length ? "ok" : "error");
    });
  });
})();
