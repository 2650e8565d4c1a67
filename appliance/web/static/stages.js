// The project page: drag a branch onto a stage's title to move it there, or onto another
// branch to merge it into that one (after a confirmation). A drop posts what the branch's
// Actions menu posts, so the page works the same without this script. While a branch is
// dragged, a menu is open or the keyboard is in the list, the list's 2-second refresh
// waits: replacing the list would drop what the person is holding.
(function () {
  "use strict";

  var dragged = null;   // the .branch element being dragged
  var marked = null;    // the drop target under the pointer, highlighted

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function post(url, fields) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = url;
    form.hidden = true;
    fields.csrf_token = csrfToken();
    Object.keys(fields).forEach(function (name) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = fields[name];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  function mark(target) {
    if (marked === target) {
      return;
    }
    if (marked) {
      marked.classList.remove("drop-target");
    }
    marked = target;
    if (marked) {
      marked.classList.add("drop-target");
    }
  }

  function clear() {
    mark(null);
    if (dragged) {
      dragged.classList.remove("dragging");
    }
    dragged = null;
  }

  // A stage's title, or another branch; null where a drop means nothing.
  function targetOf(event) {
    if (!dragged || !event.target.closest) {
      return null;
    }
    var title = event.target.closest("[data-drop-stage]");
    if (title) {
      return title;
    }
    var branch = event.target.closest(".branch[data-branch]");
    return branch && branch !== dragged ? branch : null;
  }

  function dropped(source, target) {
    var name = source.getAttribute("data-branch");
    if (target.hasAttribute("data-drop-stage")) {
      var stage = target.getAttribute("data-drop-stage");
      if (stage !== source.getAttribute("data-stage")) {
        post(source.getAttribute("data-move"), {stage: stage});
      }
      return;
    }
    var into = target.getAttribute("data-branch");
    if (window.confirm("Merge " + name + " into " + into + "?")) {
      post(source.getAttribute("data-merge"), {target: into});
    }
  }

  document.addEventListener("dragstart", function (event) {
    var branch = event.target.closest && event.target.closest('.branch[draggable="true"]');
    if (!branch) {
      return;
    }
    dragged = branch;
    branch.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", branch.getAttribute("data-branch"));
  });

  document.addEventListener("dragover", function (event) {
    var target = targetOf(event);
    mark(target);
    if (target) {
      event.preventDefault();  // allows the drop
      event.dataTransfer.dropEffect = "move";
    }
  });

  document.addEventListener("drop", function (event) {
    var target = targetOf(event);
    var source = dragged;
    clear();
    if (target) {
      event.preventDefault();
      dropped(source, target);
    }
  });

  document.addEventListener("dragend", clear);

  document.addEventListener("htmx:beforeRequest", function (event) {
    var list = event.target;
    if (list.id !== "branches") {
      return;
    }
    // Keyboard focus only: a mouse click on a link or a summary must not stop the updates.
    var focused = document.activeElement;
    var keyboard = focused && list.contains(focused) && focused.matches(":focus-visible");
    if (dragged || keyboard || list.querySelector("details[open]")) {
      event.preventDefault();
    }
  });
})();
