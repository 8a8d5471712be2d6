// The console's theme switch. Each page comes with the configured theme (`data-theme` on
// <html>, from viewer.theme), which is all a browser without JavaScript needs. A browser whose
// owner picked the other theme keeps that choice in localStorage ("goop.theme"); this script
// runs in <head>, so the choice applies before the page is drawn, and then shows the switch.
(function () {
  "use strict";
  const KEY = "goop.theme";
  const root = document.documentElement;
  const configured = root.dataset.theme;

  function valid(theme) {
    return theme === "dark" || theme === "light";
  }

  function stored() {
    try {
      return localStorage.getItem(KEY);
    } catch (_) {
      return null; // storage refused: the configured theme it is
    }
  }

  function store(theme) {
    try {
      // The configured theme needs no entry, so a later change of viewer.theme applies.
      if (theme === configured) localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, theme);
    } catch (_) {
      // Not kept; this page still switches.
    }
  }

  const chosen = stored();
  if (valid(chosen)) root.dataset.theme = chosen;

  document.addEventListener("DOMContentLoaded", function () {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    function show() {
      const other = root.dataset.theme === "dark" ? "light" : "dark";
      button.textContent = other === "light" ? "☀ Light" : "☾ Dark";
      button.title = "Switch to the " + other + " theme (kept in this browser)";
    }
    button.addEventListener("click", function () {
      const next = root.dataset.theme === "dark" ? "light" : "dark";
      root.dataset.theme = next;
      store(next);
      show();
    });
    // Another tab switched.
    window.addEventListener("storage", function (event) {
      if (event.key !== KEY) return;
      root.dataset.theme = valid(event.newValue) ? event.newValue : configured;
      show();
    });
    show();
    button.hidden = false;
  });
})();
