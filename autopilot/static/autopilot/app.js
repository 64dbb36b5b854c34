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
//   its errors) instead of treating it as an error; [data-swap-errors] swaps a 400 or a 403 (a panel
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
    var swap400 = status === 400 && e.target.closest && e.target.closest("[data-swap-400], [data-swap-errors]");
    var swap403 = status === 403 && e.target.closest && e.target.closest("[data-swap-errors]");
    if (swap400 || swap403) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
})();

// The dashboard and other live panels:
// - [data-refresh-on-event]: every "autopilot:event" from inside it becomes one "autopilot:refresh" (at
//   most one per 700 ms, and always one after the last event, so a busy stream never starves it);
//   an htmx request made from inside it (Stop, Approve on a card) refreshes it too when it completes.
// - <time data-elapsed-since="ISO">: the elapsed time, ticking every second.
// - <form data-autosubmit>: submitted when one of its fields changes (the dashboard filters).
// - [data-notify-enable]: a button that asks for browser notifications; once allowed, a run that starts
//   waiting for approval (the #needs-input badge lists them) shows a notification.
(function () {
  var PERIOD = 700;
  function schedule(el, name) {
    var now = Date.now();
    var last = el.__apLast || 0;
    if (el.__apTimer) { el.__apPending = true; return; }
    var wait = Math.max(0, last + PERIOD - now);
    el.__apTimer = setTimeout(function fire() {
      el.__apTimer = null;
      el.__apLast = Date.now();
      el.__apPending = false;
      el.dispatchEvent(new CustomEvent(name, { bubbles: false }));
      setTimeout(function () {
        if (el.__apPending && !el.__apTimer) { el.__apPending = false; schedule(el, name); }
      }, PERIOD);
    }, wait);
  }
  document.addEventListener("autopilot:event", function (e) {
    var box = e.target.closest ? e.target.closest("[data-refresh-on-event]") : null;
    if (box) schedule(box, "autopilot:refresh");
    // A project page's panels (header controls, manager plan) follow the project's state.
    var kind = (e.detail && e.detail.kind) || "";
    if (e.target.hasAttribute && e.target.hasAttribute("data-project-changes") && /^(tick|project|executionrun|task|integration)/.test(kind)) {
      schedule(document.body, "autopilot:project-changed");
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = e.detail.elt;
    var box = elt && elt.closest ? elt.closest("[data-refresh-on-event]") : null;
    if (box && e.detail.requestConfig && e.detail.requestConfig.verb === "post") schedule(box, "autopilot:refresh");
  });

  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function elapsed(seconds) {
    if (seconds < 0) seconds = 0;
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.floor(seconds % 60);
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }
  function tick() {
    document.querySelectorAll("[data-elapsed-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-elapsed-since"));
      if (!isNaN(since)) el.textContent = elapsed((Date.now() - since) / 1000);
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);

  document.addEventListener("change", function (e) {
    var form = e.target.closest ? e.target.closest("form[data-autosubmit]") : null;
    if (form) form.submit();
  });

  var canNotify = "Notification" in window;
  function seenRuns() {
    try { return JSON.parse(sessionStorage.getItem("ap-waiting") || "[]"); } catch (err) { return []; }
  }
  function notifyNew(badge) {
    var runs = (badge.getAttribute("data-runs") || "").split("|").filter(Boolean);
    var seen = seenRuns();
    var ids = runs.map(function (r) { return r.split(":")[0]; });
    try { sessionStorage.setItem("ap-waiting", JSON.stringify(ids)); } catch (err) { /* private mode */ }
    if (!canNotify || Notification.permission !== "granted") return;
    runs.forEach(function (r) {
      var id = r.split(":")[0], project = r.slice(id.length + 1);
      if (seen.indexOf(id) === -1) {
        var n = new Notification("Run #" + id + " needs your approval", { body: project, tag: "ap-run-" + id });
        n.onclick = function () { window.focus(); location.href = "/runs/" + id + "/"; };
      }
    });
  }
  document.addEventListener("htmx:afterSwap", function (e) {
    var badge = document.getElementById("needs-input");
    if (badge && badge.hasAttribute("data-count")) notifyNew(badge);
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-notify-enable]").forEach(function (button) {
      if (!canNotify || Notification.permission !== "default") return;
      button.hidden = false;
      button.addEventListener("click", function () {
        Notification.requestPermission().then(function () { button.hidden = true; });
      });
    });
    tick();
  });
})();

// <button data-copy="#id">: copies the text of the element #id (a PR body) to the clipboard.
document.addEventListener("click", function (e) {
  var button = e.target.closest ? e.target.closest("[data-copy]") : null;
  if (!button) return;
  var source = document.querySelector(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.value !== undefined ? source.value : source.textContent;
  var done = function () { button.textContent = "Copied"; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    source.select && source.select();
    document.execCommand("copy");
    done();
  }
});
