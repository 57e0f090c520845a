/* wattkeeper dashboard: getting attention for critical and high alarms (issue 18).
 *
 * The header badge carries #attention with the unacknowledged count and the newest unacknowledged
 * critical/high alarm's time. Whenever the badge is (re)loaded:
 * - the tab title starts with "(N) " while N alarms are unacknowledged;
 * - a newer critical/high alarm than the last one seen plays a two-tone sound (unless muted; the
 *   choice is kept in localStorage) and raises a browser notification when permitted;
 * - the sound repeats every REPEAT_MS while such an alarm stays unacknowledged;
 * - the badge blinks (CSS class `urgent`, from the server) until they are acknowledged.
 * The mute button's data-played / the notify button's data-shown count what was actually done,
 * so a test can check it.
 */
(function () {
  "use strict";

  const MUTE_KEY = "wk_muted";
  const SEEN_KEY = "wk_urgent_seen";
  const REPEAT_MS = 30000;
  const baseTitle = document.title;
  let audio = null;
  let repeat = null;

  function muted() { return localStorage.getItem(MUTE_KEY) === "1"; }

  function bump(el, attr) {
    if (el) el.dataset[attr] = String(Number(el.dataset[attr] || "0") + 1);
  }

  function beep() {
    if (muted()) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    } catch (e) {
      return; /* no audio at all: the title and the notification still tell */
    }
    // A browser keeps a page's audio suspended until someone has clicked on it: count only what sounded.
    if (audio.state === "running") tones();
    else audio.resume().then(function () { if (audio.state === "running") tones(); }, function () { /* blocked */ });
  }

  function tones() {
    try {
      const t0 = audio.currentTime;
      [880, 660, 880].forEach(function (freq, i) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = "square";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.15, t0 + i * 0.25);
        gain.gain.exponentialRampToValueAtTime(0.001, t0 + i * 0.25 + 0.22);
        osc.connect(gain).connect(audio.destination);
        osc.start(t0 + i * 0.25);
        osc.stop(t0 + i * 0.25 + 0.23);
      });
      bump(document.getElementById("mute"), "played");
    } catch (e) {
      /* no audio device: the title and the notification still tell */
    }
  }

  function notify(marker) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const badge = document.querySelector("#badge .badge");
    try {
      const n = new Notification(marker.dataset.title + " · " + document.title, {
        body: badge ? badge.textContent.replace(/\s+/g, " ").trim() : "",
        tag: "wattkeeper-alarm",
        renotify: true,
      });
      n.onclick = function () { window.focus(); location.href = "/?view=alarms"; };
      bump(document.getElementById("notify"), "shown");
    } catch (e) {
      /* some browsers only allow notifications from a service worker */
    }
  }

  function update() {
    const marker = document.getElementById("attention");
    if (!marker) return;
    const unacked = Number(marker.dataset.unacked || "0");
    const urgent = Number(marker.dataset.urgent || "0");
    const newest = Number(marker.dataset.urgentNewest || "0");
    document.title = (unacked ? "(" + unacked + ") " : "") + baseTitle;
    const seen = Number(sessionStorage.getItem(SEEN_KEY) || "0");
    if (urgent && newest > seen) {
      sessionStorage.setItem(SEEN_KEY, String(newest));
      beep();
      notify(marker);
    }
    if (urgent && !repeat) repeat = setInterval(beep, REPEAT_MS);
    if (!urgent && repeat) { clearInterval(repeat); repeat = null; }
  }

  function label(button) {
    button.textContent = muted() ? button.dataset.unmute : button.dataset.mute;
    button.setAttribute("aria-pressed", muted() ? "true" : "false");
  }

  document.addEventListener("DOMContentLoaded", function () {
    const mute = document.getElementById("mute");
    if (mute) {
      label(mute);
      mute.addEventListener("click", function () {
        localStorage.setItem(MUTE_KEY, muted() ? "0" : "1");
        label(mute);
        // A click is the gesture a browser wants before it lets a page play sound.
        if (!muted() && !audio) {
          try { audio = new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { /* none */ }
        }
      });
    }
    const ask = document.getElementById("notify");
    if (ask) {
      if (!("Notification" in window) || Notification.permission !== "default") ask.hidden = true;
      ask.addEventListener("click", function () {
        Notification.requestPermission().then(function () { ask.hidden = true; });
      });
    }
    update();
  });
  document.addEventListener("htmx:afterSettle", update);
})();
