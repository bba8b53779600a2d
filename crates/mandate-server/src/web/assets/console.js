// Mandate console: the only script. It keeps the approvals count current without a reload and
// asks for a confirmation before a form marked `data-confirm` (the kill switch, revocations) is
// sent. Pages work without it; it loads nothing from elsewhere.
"use strict";
(function () {
  const badge = document.getElementById("approval-count");
  async function refresh() {
    if (!badge) return;
    try {
      const r = await fetch(badge.dataset.countUrl, { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) { badge.textContent = "?"; return; }
      const body = await r.json();
      badge.textContent = String(body.pending);
      badge.dataset.pending = String(body.pending);
      const list = document.getElementById("approval-list");
      if (list && list.dataset.shown !== String(body.pending)) {
        const note = document.getElementById("approval-news");
        if (note) note.hidden = false;
      }
    } catch (e) { badge.textContent = "?"; }
  }
  refresh();
  setInterval(refresh, 2000);
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
