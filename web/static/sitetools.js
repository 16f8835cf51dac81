// Job page: load the evaluation section (forms with data-confirm are confirmed by portal.js).
"use strict";
(function () {
  const box = document.getElementById("evaluation-results");
  if (!box || !box.dataset.url) return;
  fetch(box.dataset.url, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.text() : Promise.reject(new Error(`status ${response.status}`))))
    .then((html) => {
      box.innerHTML = html;
    })
    .catch((error) => {
      box.textContent = `Could not load the evaluation (${error.message}); reload the page to try again.`;
    });
})();
