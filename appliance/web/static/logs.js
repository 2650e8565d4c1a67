// Follow a build's log live: one entry per log record, a traceback kept whole.
// The server sends each complete line as an SSE event whose id is the byte offset after
// it; "cont" lines belong to the previous entry. Without this script the page shows the
// file in a <pre>.
(function () {
  "use strict";

  var RECORD = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ ([A-Z]+) /;
  var MAX_ENTRIES = 5000;      // older entries are dropped to keep the page responsive
  var NEAR_BOTTOM_PX = 40;     // within this of the bottom counts as "following"

  function start(view) {
    var entries = view.querySelector(".log-entries");
    var raw = view.querySelector(".log-raw");
    var pauseButton = document.getElementById("log-pause");
    var resumeButton = document.getElementById("log-resume");
    var status = document.getElementById("log-status");
    var streamUrl = view.getAttribute("data-stream");
    var offset = view.getAttribute("data-offset") || "0";
    var source = null;
    var last = null;

    raw.hidden = true;
    entries.hidden = false;

    function atBottom() {
      return entries.scrollHeight - entries.scrollTop - entries.clientHeight < NEAR_BOTTOM_PX;
    }

    function setFollowing(following, message) {
      pauseButton.hidden = !following;
      resumeButton.hidden = following;
      status.textContent = message;
    }

    function newEntry(line) {
      var match = RECORD.exec(line);
      var entry = document.createElement("div");
      entry.className = "entry" + (match ? " " + match[1].toLowerCase() : "");
      entry.textContent = line;
      entries.appendChild(entry);
      while (entries.childElementCount > MAX_ENTRIES) {
        entries.removeChild(entries.firstElementChild);
      }
      return entry;
    }

    function onLine(event) {
      var data = JSON.parse(event.data);
      var follow = atBottom();
      if (data.cont && last) {
        last.textContent += "\n" + data.line;
      } else {
        last = newEntry(data.line);
      }
      if (event.lastEventId) {
        offset = event.lastEventId;
      }
      if (follow) {
        entries.scrollTop = entries.scrollHeight;
      }
    }

    function stop() {
      if (source) {
        source.close();
        source = null;
      }
    }

    function connect() {
      stop();
      source = new EventSource(streamUrl + "?offset=" + encodeURIComponent(offset));
      source.onmessage = onLine;
      source.addEventListener("timeout", function () {
        stop();
        setFollowing(false, "Following stopped after 5 minutes — Resume");
      });
      source.onerror = function () {
        if (source && source.readyState === EventSource.CLOSED) {
          stop();
          setFollowing(false, "Disconnected — Resume");
        }
      };
      source.onopen = function () {
        setFollowing(true, "Following");
      };
      setFollowing(true, "Following");
    }

    pauseButton.addEventListener("click", function () {
      stop();
      setFollowing(false, "Paused");
    });
    resumeButton.addEventListener("click", function () {
      entries.scrollTop = entries.scrollHeight;
      connect();
    });
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var view = document.getElementById("log");
    if (view) {
      start(view);
    }
  });
})();
