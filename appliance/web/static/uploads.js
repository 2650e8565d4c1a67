// The import form of the Backups tab: the file goes up in pieces with a progress bar,
// and resumes after a dropped connection or a reload. The upload's id is kept in
// localStorage under the file's name, size and modification time; choosing the same
// file again asks the server how many bytes it has and goes on from there. A piece is
// sent at the offset the server has (it refuses any other with 409, saying where it
// stands). When every byte is in, the import is queued and the page goes to its build.
(function () {
  "use strict";

  // After a network error, wait this long (ms) before asking the server where it stands;
  // give up after this many failures in a row.
  var RETRY_MS = 1000;
  var RETRIES = 8;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function human(bytes) {
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i += 1; }
    return (i === 0 ? bytes.toFixed(0) : bytes.toFixed(1)) + " " + units[i];
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  // A JSON request; resolves {status, body} whatever the status, rejects on a network error.
  function call(method, url, body, contentType) {
    var headers = {"X-CSRF-Token": csrfToken(), "Accept": "application/json"};
    if (contentType) { headers["Content-Type"] = contentType; }
    return fetch(url, {method: method, headers: headers, body: body, credentials: "same-origin"})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (json) {
          return {status: response.status, body: json};
        });
      });
  }

  function Upload(form, file, branch) {
    this.form = form;
    this.file = file;
    this.branch = branch;
    this.key = ["upload", form.dataset.project, file.name, file.size, file.lastModified].join(":");
    this.bar = form.querySelector("#upload-progress");
    this.status = form.querySelector("#upload-status");
    this.button = form.querySelector("#upload-start");
  }

  Upload.prototype.say = function (text, failed) {
    this.status.textContent = text;
    this.status.classList.toggle("error", !!failed);
  };

  Upload.prototype.show = function (received) {
    var percent = Math.floor(received * 100 / this.file.size);
    this.bar.hidden = false;
    this.bar.value = percent;
    this.form.dataset.received = received;
    this.say(human(received) + " of " + human(this.file.size) + " (" + percent + "%)");
  };

  // The upload this file already has on the server, or a new one.
  Upload.prototype.open = function () {
    var self = this;
    var known = localStorage.getItem(self.key);
    var ask = known ? call("GET", self.form.dataset.startUrl + "/" + encodeURIComponent(known))
                    : Promise.resolve({status: 404});
    return ask.then(function (found) {
      if (found.status === 200 && found.body.state !== "imported") { return found.body; }
      localStorage.removeItem(self.key);
      return call("POST", self.form.dataset.startUrl,
                  JSON.stringify({name: self.file.name, size: self.file.size}),
                  "application/json").then(function (made) {
        if (made.status !== 201) { throw new Error(made.body.error || "refused (" + made.status + ")"); }
        localStorage.setItem(self.key, made.body.id);
        return made.body;
      });
    });
  };

  // Send the pieces from where the server stands until it has every byte.
  Upload.prototype.send = function (upload) {
    var self = this;
    var failures = 0;
    function next(received) {
      self.show(received);
      if (received >= self.file.size) { return Promise.resolve(upload); }
      var end = Math.min(received + upload.chunk_bytes, self.file.size);
      return call("POST", upload.chunks_url + "?offset=" + received, self.file.slice(received, end),
                  "application/octet-stream").then(function (answer) {
        failures = 0;
        if (answer.status === 200) { return next(answer.body.received); }
        if (answer.status === 409 && typeof answer.body.received === "number") {
          return next(answer.body.received);  // the server says where it stands
        }
        throw new Error(answer.body.error || "refused (" + answer.status + ")");
      }, function () {  // the connection dropped: ask where the server stands, go on
        failures += 1;
        if (failures > RETRIES) { throw new Error("the connection is lost: choose the file again to resume"); }
        self.say("Connection lost, trying again…");
        return sleep(RETRY_MS * failures).then(function () {
          return call("GET", upload.status_url);
        }).then(function (answer) {
          return next(answer.status === 200 ? answer.body.received : received);
        }, function () { return next(received); });
      });
    }
    return next(upload.received);
  };

  Upload.prototype.importInto = function (upload) {
    var self = this;
    self.say("Uploaded. Checking the file and queuing the import…");
    return call("POST", upload.import_url, JSON.stringify({branch: self.branch}),
                "application/json").then(function (answer) {
      if (answer.status !== 200) { throw new Error(answer.body.error || "refused (" + answer.status + ")"); }
      localStorage.removeItem(self.key);
      window.location.assign(answer.body.page);
    });
  };

  Upload.prototype.run = function () {
    var self = this;
    self.button.disabled = true;
    self.say("Starting…");
    return self.open()
      .then(function (upload) { return self.send(upload); })
      .then(function (upload) { return self.importInto(upload); })
      .catch(function (error) {
        self.say(error.message, true);
        self.button.disabled = false;
      });
  };

  function start(event) {
    var form = event.target;
    var input = form.querySelector("#upload-file");
    event.preventDefault();
    if (!input.files.length) { return; }
    var file = input.files[0];
    if (file.size > Number(form.dataset.maxBytes)) {
      form.querySelector("#upload-status").textContent =
        "This file is " + human(file.size) + ": the most this appliance takes is " +
        human(Number(form.dataset.maxBytes)) + ".";
      return;
    }
    new Upload(form, file, form.querySelector("#upload-branch").value).run();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    if (form) { form.addEventListener("submit", start); }
  });
}());
