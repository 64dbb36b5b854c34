// Live updates. Any element with data-live-events="project=ID[&subject=TYPE.ID]" opens a websocket to
// /ws/events/ and dispatches an "autopilot:event" DOM event (detail = the event) for every event;
// htmx targets listen with hx-trigger="autopilot:event from:closest [data-live-events]" (or similar).
// Render data-last-event="{{ last_event_id }}" with the page so nothing between render and connect is
// missed: the server replays every event after it, on the first connect and on each reconnect.
(function () {
  function connect(el, delay) {
    var params = el.getAttribute("data-live-events");
    var last = el.getAttribute("data-last-event") || "0";
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + location.host + "/ws/events/?" + params + "&after=" + last);
    ws.onopen = function () { delay = 1000; };
    ws.onmessage = function (msg) {
      var data = JSON.parse(msg.data);
      if (data.type === "resync") { location.reload(); return; }  // too much was missed: start afresh
      if (data.type !== "event") return;
      var seen = parseInt(el.getAttribute("data-last-event") || "0", 10);
      if (data.event.id > seen) el.setAttribute("data-last-event", data.event.id);
      el.dispatchEvent(new CustomEvent("autopilot:event", { detail: data.event, bubbles: true }));
    };
    // Reconnect with backoff (1 s doubling to 30 s), resuming after the last event seen; not after a
    // refusal (4403: no access any more, e.g. the membership was removed; 4400: a bad request).
    ws.onclose = function (e) {
      if (e.code === 4403 || e.code === 4400) return;
      setTimeout(function () { connect(el, Math.min(delay * 2, 30000)); }, delay);
    };
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-events]").forEach(function (el) { connect(el, 1000); });
  });
})();

// Behaviour that would otherwise be inline (the Content-Security-Policy forbids inline handlers and
// htmx runs with allowEval off):
// - <form data-confirm="Question?">: ask before submitting; cancelled when the user says no.
// - <section data-swap-400>: htmx requests from inside it swap a 400 response (a form re-rendered with
//   its errors) instead of treating it as an error; data-swap-403 does the same for a 403 (a panel
//   re-rendered with the refusal's reason).
(function () {
  document.addEventListener("submit", function (e) {
    var form = e.target.closest ? e.target.closest("form[data-confirm]") : null;
    if (form && !window.confirm(form.getAttribute("data-confirm"))) {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("htmx:beforeSwap", function (e) {
    var status = e.detail.xhr.status;
    if ((status === 400 || status === 403) && e.target.closest && e.target.closest("[data-swap-" + status + "]")) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
})();
