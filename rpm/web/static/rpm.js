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

  // An action answered with its row: the button pressed may be gone (an acknowledged
  // alert has no Acknowledge), so keep the keyboard in the row rather than lose it to the
  // top of the page. A refusal in the row is read out (role="alert"). On afterSwap, not
  // afterSettle: a live refresh of the list may replace the row in between.
  document.addEventListener("htmx:afterSwap", function (event) {
    const row = event.detail.elt;
    if (!(row instanceof HTMLTableRowElement) || row.contains(document.activeElement)) return;
    const next = row.querySelector("button, summary");
    (next || row).focus();
  });

  // The worklist, live. The server says when the user's teams' alerts change, and the
  // list is read again: at once, unless the person is in the middle of something in it
  // (an Assign or Resolve open), when a notice offers the changes instead and they come
  // when the form closes. The stream also says when the session has ended (idle), and the
  // page then goes to the sign-in form: no patient data left on an unattended screen.
  const live = document.getElementById("worklist-live");
  if (!live || !window.EventSource) return;
  const notice = document.getElementById("worklist-changed");
  let waiting = false;
  let shown;

  function busy() {
    const list = document.getElementById("worklist");
    return list !== null && list.querySelector("details[open]") !== null;
  }

  function refresh(askedFor) {
    waiting = false;
    notice.hidden = true;
    // A refresh the page makes by itself is no sign of a person: it does not hold off
    // the idle log-off. One asked for is.
    const headers = askedFor ? {} : { "X-RPM-Refresh": "live" };
    htmx.ajax("GET", live.dataset.refresh, { target: "#worklist", swap: "outerHTML", headers: headers });
  }

  function changed() {
    if (busy()) {
      waiting = true;
      notice.hidden = false;
    } else {
      refresh(false);
    }
  }

  document.getElementById("worklist-show-changes").addEventListener("click", function () {
    refresh(true);
  });
  // An action form closed, or its row replaced: a moment for what was waiting.
  document.addEventListener("toggle", function () {
    if (waiting && !busy()) refresh(false);
  }, true);
  // The row that had the keyboard may have left the list (resolved by someone else):
  // then the keyboard goes to the list's first row, not the top of the page.
  let focusWasInList = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    const list = document.getElementById("worklist");
    if (list && event.detail.target === list) focusWasInList = list.contains(document.activeElement);
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    const list = document.getElementById("worklist");
    if (!list) return;
    if (waiting && !busy()) refresh(false);
    if (event.detail.elt === list) {
      if (focusWasInList && !list.contains(document.activeElement)) {
        (list.querySelector("tbody tr") || list).focus();
      }
      const alerts = list.dataset.alerts;
      if (alerts !== shown) {
        const count = alerts ? alerts.split(" ").length : 0;
        const noun = count === 1 ? " unresolved alert" : " unresolved alerts";
        say("status-message", "The worklist has changed: " + count + noun + " on this page.");
      }
      shown = alerts;
    }
  });
  shown = document.getElementById("worklist").dataset.alerts;

  function listen() {
    const source = new EventSource(live.dataset.events);
    source.addEventListener("worklist-changed", changed);
    source.addEventListener("signed-out", function (event) {
      window.location.assign("/ui/login?ended=" + encodeURIComponent(event.data));
    });
    source.addEventListener("error", function () {
      // Refused (the session ended: the list's refresh is then sent to the sign-in form)
      // or the service is away for longer than the browser retries: look, then listen
      // again a little later.
      if (source.readyState === EventSource.CLOSED) {
        changed();
        window.setTimeout(listen, 15000);
      }
    });
  }
  listen();
})();
