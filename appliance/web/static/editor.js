// The Editor tab: CodeMirror over the page's textarea (the form still posts the
// textarea, which CodeMirror fills on submit), Ctrl-S to save, search (Ctrl-F) and
// go-to-line (Alt-G), and a warning before leaving the page with unsaved changes.
// Without this script the page is a plain textarea and the same form.
(function () {
  "use strict";

  var JSON_MODE = { name: "javascript", json: true };
  var MODES = {
    py: "python", xml: "xml", svg: "xml", js: "javascript", mjs: "javascript",
    json: JSON_MODE, css: "css", scss: "text/x-scss", less: "text/x-less",
    html: "htmlmixed", htm: "htmlmixed", md: "markdown", rst: "rst", sql: "sql",
    cfg: "properties", ini: "properties", conf: "properties", toml: "properties",
    sh: "shell"
  };
  var NAMED = { "Dockerfile": "shell", "requirements.txt": "properties" };

  function modeFor(path) {
    var name = path.split("/").pop();
    if (NAMED[name]) {
      return NAMED[name];
    }
    var dot = name.lastIndexOf(".");
    return dot > 0 ? (MODES[name.slice(dot + 1).toLowerCase()] || null) : null;
  }

  function indentOrSpaces(cm) {
    if (cm.somethingSelected()) {
      cm.indentSelection("add");
    } else {
      cm.replaceSelection(new Array(cm.getOption("indentUnit") + 1).join(" "), "end");
    }
  }

  function start() {
    var area = document.getElementById("editor-content");
    var form = document.getElementById("editor-form");
    if (!area || !form || !window.CodeMirror) {
      return;
    }
    var readOnly = area.hasAttribute("readonly");
    var dirty = false;

    function save() {
      if (readOnly) {
        return;
      }
      if (form.requestSubmit) {
        form.requestSubmit();
      } else {
        editor.save();
        dirty = false;
        form.submit();
      }
    }

    var editor = window.CodeMirror.fromTextArea(area, {
      mode: modeFor(area.getAttribute("data-path") || ""),
      lineNumbers: true,
      indentUnit: 4,
      matchBrackets: true,
      readOnly: readOnly,
      extraKeys: { "Ctrl-S": save, "Cmd-S": save, "Alt-G": "jumpToLine", "Tab": indentOrSpaces }
    });
    editor.on("change", function () { dirty = true; });
    form.addEventListener("submit", function () { dirty = false; });
    window.addEventListener("beforeunload", function (event) {
      if (dirty) {
        event.preventDefault();
        event.returnValue = "";
      }
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
