// Behaviour every page shares, kept out of the HTML so that the Content-Security-Policy can forbid inline
// scripts, inline event handlers and style attributes: confirmations, auto-submitting filters, progress bars.
"use strict";
(function () {
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
  });
  // Setting a width through the DOM is allowed under the policy; a style="" attribute is not.
  document.querySelectorAll(".bar[data-width]").forEach((bar) => {
    bar.style.width = `${Number(bar.dataset.width)}%`;
  });
})();
