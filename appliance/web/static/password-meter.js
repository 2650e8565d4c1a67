// Strength meters of new-password fields: an <input data-strength-meter="ID"> shows, in
// the element ID (a <meter> and words), how hard the typed password is to guess, as
// zxcvbn (vendor/zxcvbn.js) estimates it. The server's rules decide; this only advises.
(function () {
  "use strict";
  var WORDS = ["very weak", "weak", "fair", "strong", "very strong"];

  function update(input, box) {
    var value = input.value;
    box.hidden = value.length === 0;
    if (!value || typeof window.zxcvbn !== "function") {
      return;
    }
    var hints = [input.dataset.userName || "", "odoo", "appliance"];
    var result = window.zxcvbn(value.slice(0, 100), hints);
    box.querySelector("meter").value = result.score;
    var advice = result.feedback.warning || (result.feedback.suggestions || [])[0] || "";
    box.querySelector(".strength-words").textContent =
      WORDS[result.score] + (advice ? ": " + advice : "");
  }

  function attach() {
    document.querySelectorAll("input[data-strength-meter]").forEach(function (input) {
      var box = document.getElementById(input.dataset.strengthMeter);
      if (!box) {
        return;
      }
      input.addEventListener("input", function () { update(input, box); });
      update(input, box);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", attach);
  } else {
    attach();
  }
})();
