// hab's dashboard script. Every page works without it; with it, a section
// marked data-live follows the server's events (no reload).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-live]")) {
    if (!window.EventSource) continue;
    const source = new EventSource(el.dataset.live);
    source.addEventListener("live", (e) => {
      // The server renders this HTML with every value escaped.
      el.innerHTML = e.data;
      el.dataset.updated = String(Date.now());
    });
  }
});
