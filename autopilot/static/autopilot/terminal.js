// The run page's terminal panel (templates/runs/_terminal.html), on xterm.js (vendor/xterm-6.0.0).
// - [data-terminal="/ws/runs/ID/terminal/"]: a live terminal. Output arrives as binary frames;
//   keystrokes go out as {"type": "input", "data": ...} and size changes as {"type": "resize", ...}
//   (runs/consumers.py). The close code says why it ended (4403 refused, 4409 session over).
// - [data-terminal-replay="/runs/ID/recording.cast"]: plays an asciicast v2 recording (fetched with
//   the session cookie, redacted by the server) with Replay / Skip to end / speed controls.
// [data-terminal-status] next to it shows the state; the box gets data-state (connecting, open,
// closed / loading, ready, playing, done) for tests and styles. A replay starts once its box is on
// screen (ready until then), so the viewer sees it play.
//
// xterm.js creates <style> elements at run time (cell sizes, colours). The Content-Security-Policy
// allows only nonced ones, so the page's nonce (this script tag's) goes on every <style> a script
// creates. That lets page scripts — which the CSP already trusts — add styles; markup injected into
// the page still cannot.
(function () {
  var nonce = document.currentScript && document.currentScript.nonce;
  if (nonce) {
    var create = document.createElement;
    document.createElement = function (tag, options) {
      var el = create.call(document, tag, options);
      if (String(tag).toLowerCase() === "style") el.setAttribute("nonce", nonce);
      return el;
    };
  }
  var THEME = { background: "#0f1720", foreground: "#e6edf3", cursor: "#e6edf3" };
  var INPUT_CHUNK = 8192; // characters per input frame (the server takes at most 64 KiB a frame)
  var IDLE_LIMIT = 1.0;   // a replay shortens pauses longer than this (seconds), like asciinema -i

  function statusOf(box) {
    return box.parentNode.querySelector("[data-terminal-status]");
  }
  function say(box, text, isError) {
    var status = statusOf(box);
    if (!status) return;
    status.textContent = text;
    if (isError) status.setAttribute("data-state", "error"); else status.removeAttribute("data-state");
  }
  function newTerminal(box, options) {
    var term = new Terminal(Object.assign({ theme: THEME, fontSize: 13, scrollback: 5000 }, options || {}));
    var fit = null;
    if (!options || !options.cols) {
      fit = new FitAddon.FitAddon();
      term.loadAddon(fit);
    }
    term.open(box);
    if (fit) fit.fit();
    return { term: term, fit: fit };
  }

  var CLOSED = {
    1000: "The terminal closed (the session ended, or tmux detached). Reload the page to attach again or replay.",
    1011: "The terminal could not start.",
    4400: "The terminal refused a message it could not read.",
    4403: "Refused: attaching needs the operator role on this project (or you were logged out).",
    4409: "The session is not running any more. Reload the page to replay its recording."
  };

  function live(box) {
    var made = newTerminal(box);
    var term = made.term, fit = made.fit;
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var url = proto + location.host + box.getAttribute("data-terminal") + "?cols=" + term.cols + "&rows=" + term.rows;
    var ws = new WebSocket(url);
    var lastError = "";
    ws.binaryType = "arraybuffer";
    box.setAttribute("data-state", "connecting");
    function send(message) {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
    }
    ws.onopen = function () {
      box.setAttribute("data-state", "open");
      say(box, "Attached.");
      term.focus();
    };
    ws.onmessage = function (e) {
      if (typeof e.data !== "string") { term.write(new Uint8Array(e.data)); return; }
      var message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      if (message.type === "error") { lastError = message.message; say(box, message.message, true); }
    };
    ws.onclose = function (e) {
      box.setAttribute("data-state", "closed");
      var text = CLOSED[e.code] || "Disconnected. Reload the page to attach again.";
      say(box, lastError && e.code === 4400 ? text + " (" + lastError + ")" : text, e.code !== 1000);
      term.options.disableStdin = true;
    };
    term.onData(function (data) {
      for (var i = 0; i < data.length; i += INPUT_CHUNK) send({ type: "input", data: data.slice(i, i + INPUT_CHUNK) });
    });
    term.onBinary(function (data) {
      if (ws.readyState !== WebSocket.OPEN) return;
      var bytes = new Uint8Array(data.length);
      for (var i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
      ws.send(bytes);
    });
    term.onResize(function (size) { send({ type: "resize", cols: size.cols, rows: size.rows }); });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () { fit.fit(); }, 150);
    });
  }

  function parseCast(text) {
    var lines = text.split("\n").filter(function (l) { return l.trim(); });
    var header = JSON.parse(lines[0]);
    var events = [];
    for (var i = 1; i < lines.length; i++) {
      try {
        var ev = JSON.parse(lines[i]);
        if (Array.isArray(ev) && ev.length === 3 && typeof ev[0] === "number") events.push(ev);
      } catch (err) { /* not an event: skipped */ }
    }
    return { header: header, events: events };
  }

  // xterm.js paints nothing while its terminal is off screen (it pauses its renderer until it is
  // scrolled into view), so a replay started below the fold would play unseen: it starts when shown.
  function whenShown(element, callback) {
    if (!("IntersectionObserver" in window)) { callback(); return; }
    var observer = new IntersectionObserver(function (entries) {
      if (!entries.some(function (entry) { return entry.isIntersecting; })) return;
      observer.disconnect();
      callback();
    });
    observer.observe(element);
  }

  function replay(box) {
    var panel = box.closest("section") || box.parentNode;
    var url = box.getAttribute("data-terminal-replay");
    var speedSelect = panel.querySelector("[data-replay-speed]");
    box.setAttribute("data-state", "loading");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/x-asciicast" } })
      .then(function (response) {
        if (response.ok) return response.text();
        var plain = (response.headers.get("Content-Type") || "").indexOf("text/plain") === 0;
        return (plain ? response.text() : Promise.resolve("")).then(function (why) {
          throw new Error(why || "the recording could not be loaded (HTTP " + response.status + ")");
        });
      })
      .then(function (text) {
        var cast = parseCast(text);
        var idle = typeof cast.header.idle_time_limit === "number" ? cast.header.idle_time_limit : IDLE_LIMIT;
        var term = newTerminal(box, { cols: cast.header.width || 80, rows: cast.header.height || 24, disableStdin: true }).term;
        var timer = null, index = 0;

        function apply(ev) {
          if (ev[1] === "o") term.write(ev[2]);
          else if (ev[1] === "r") {
            var size = /^(\d+)x(\d+)$/.exec(ev[2]);
            if (size) term.resize(parseInt(size[1], 10), parseInt(size[2], 10));
          }
        }
        function finish() {
          box.setAttribute("data-state", "done");
          say(box, "Replayed " + cast.events.length + " events.");
        }
        function delayOf(i) {
          var previous = i ? cast.events[i - 1][0] : 0;
          var speed = parseFloat(speedSelect ? speedSelect.value : "1") || 1;
          return Math.min(Math.max(cast.events[i][0] - previous, 0), idle) * 1000 / speed;
        }
        function next() {
          if (index >= cast.events.length) { finish(); return; }
          timer = setTimeout(function () {
            do { apply(cast.events[index]); index++; } while (index < cast.events.length && delayOf(index) < 4);
            next();
          }, delayOf(index));
        }
        function play() {
          clearTimeout(timer);
          term.reset();
          index = 0;
          box.setAttribute("data-state", "playing");
          say(box, "Playing…");
          next();
        }
        function toEnd() {
          clearTimeout(timer);
          while (index < cast.events.length) { apply(cast.events[index]); index++; }
          finish();
        }
        var playButton = panel.querySelector("[data-replay-play]");
        var endButton = panel.querySelector("[data-replay-end]");
        if (playButton) playButton.addEventListener("click", play);
        if (endButton) endButton.addEventListener("click", toEnd);
        box.setAttribute("data-state", "ready");
        say(box, "Ready: plays when shown.");
        whenShown(box, function () {
          if (box.getAttribute("data-state") === "ready") play(); // not when a button already started it
        });
      })
      .catch(function (err) {
        box.setAttribute("data-state", "error");
        say(box, "Replay failed: " + err.message, true);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-terminal]").forEach(live);
    document.querySelectorAll("[data-terminal-replay]").forEach(replay);
  });
})();
