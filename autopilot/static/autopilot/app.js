// Live updates: any element with data-live-events="project=ID[&subject=TYPE.ID]" reloads its
// htmx target when an event arrives over the websocket; reconnects resume after the last event id.
(function () {
  function connect(el) {
    var params = el.getAttribute("data-live-events");
    var last = el.getAttribute("data-last-event") || "0";
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + location.host + "/ws/events/?" + params + "&after=" + last);
    ws.onmessage = function (msg) {
      var data = JSON.parse(msg.data);
      if (data.type !== "event") return;
      el.setAttribute("data-last-event", data.event.id);
      el.dispatchEvent(new CustomEvent("autopilot:event", { detail: data.event, bubbles: true }));
    };
    ws.onclose = function () { setTimeout(function () { connect(el); }, 1000); };
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-events]").forEach(connect);
  });
})();
