// Job history: while any job on this page is still queued or running, refresh the page every 5 s.
"use strict";
(function () {
  if (!document.querySelector("table .badge.queued, table .badge.running")) return;
  setTimeout(function tick() {
    if (document.hidden) { setTimeout(tick, 5000); return; }
    window.location.reload();
  }, 5000);
})();
