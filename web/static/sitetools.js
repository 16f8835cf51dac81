// Job page: confirm forms that ask for it (data-confirm), and load the evaluation section.
"use strict";
(function () {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
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
