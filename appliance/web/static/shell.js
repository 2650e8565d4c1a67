// The Shell tab: xterm.js attached to a terminal in the build's server container.
// The page asks the UI for a one-time ticket (POST, with the CSRF token), opens the
// WebSocket the answer names and sends the ticket and the terminal's size first.
// Binary frames carry the bytes both ways; a text frame {"resize": [rows, cols]}
// follows every change of size. Each page (each browser tab) is a terminal of its own.
(function () {
  "use strict";

  var box = document.getElementById("shell");
  if (!box || typeof Terminal === "undefined") {
    return;
  }
  var screen = box.querySelector(".shell-screen");
  var status = box.querySelector(".shell-status");
  var reconnect = box.querySelector(".shell-reconnect");
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var encoder = new TextEncoder();
  var term = new Terminal({cursorBlink: true, fontSize: 14, scrollback: 5000,
                           fontFamily: "DejaVu Sans Mono, Menlo, Consolas, monospace"});
  var fit = new FitAddon.FitAddon();
  var socket = null;

  term.loadAddon(fit);
  term.open(screen);
  fit.fit();
  box.dataset.size = term.rows + "x" + term.cols;

  function show(state, text) {
    box.dataset.state = state;
    status.textContent = text;
    reconnect.hidden = state !== "closed";
  }

  function send(data) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(data);
    }
  }

  term.onData(function (data) { send(encoder.encode(data)); });
  term.onBinary(function (data) {
    var bytes = new Uint8Array(data.length);
    for (var i = 0; i < data.length; i++) {
      bytes[i] = data.charCodeAt(i) & 255;
    }
    send(bytes);
  });
  term.onResize(function (size) {
    box.dataset.size = size.rows + "x" + size.cols;
    send(JSON.stringify({resize: [size.rows, size.cols]}));
  });
  window.addEventListener("resize", function () { fit.fit(); });

  function refused(response) {
    return response.text().then(function (text) {
      var reason = response.status + " " + response.statusText;
      try {
        reason = JSON.parse(text).error || reason;
      } catch (e) {
        // an HTML error page: its status says enough
      }
      throw new Error(reason);
    });
  }

  function open(info) {
    socket = new WebSocket(info.url);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () {
      socket.send(JSON.stringify({ticket: info.ticket, rows: term.rows, cols: term.cols}));
      show("open", "connected");
      term.focus();
    };
    socket.onmessage = function (event) {
      term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    };
    socket.onclose = function (event) {
      socket = null;
      var reason = event.reason || (event.code === 1006 ? "connection lost" : "closed");
      term.write("\r\n\x1b[2m[" + reason + "]\x1b[0m\r\n");
      show("closed", reason);
    };
  }

  function connect() {
    show("connecting", "connecting…");
    fetch(box.dataset.ticketUrl, {method: "POST", credentials: "same-origin",
                                  headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}})
      .then(function (response) {
        return response.ok ? response.json() : refused(response);
      })
      .then(open)
      .catch(function (error) {
        term.write("\r\n\x1b[31m[" + error.message + "]\x1b[0m\r\n");
        show("closed", error.message);
      });
  }

  reconnect.addEventListener("click", function () {
    term.reset();
    connect();
  });
  connect();
}());
