// rpm's own script: what htmx does not do by itself. No inline script anywhere (the
// Content-Security-Policy allows none), so everything hooks in from here.
(function () {
  "use strict";

  function say(id, text) {
    const region = document.getElementById(id);
    if (region) region.textContent = text;
  }

  // A refusal comes as text (a sentence from the core): say it where a screen reader
  // hears it at once. A refusal that comes as HTML (a worklist row saying why) is swapped
  // into place instead. A 401 carries HX-Redirect to the sign-in form, which htmx follows.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.status < 400) {
      say("error-message", "");
      return;
    }
    const type = xhr.getResponseHeader("Content-Type") || "";
    if (type.startsWith("text/html")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    } else if (xhr.status !== 401) {
      say("error-message", xhr.responseText || "The request failed (" + xhr.status + ").");
    }
  });

  document.addEventListener("htmx:sendError", function () {
    say("error-message", "rpm could not be reached: check the connection, then try again.");
  });
})();
