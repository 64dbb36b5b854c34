// Sessions history and the launch dialog (no inline code: the CSP forbids it; htmx runs with eval off).
// - [data-launch] links load the launch form into <dialog id="launch-dialog"> over htmx; it opens once
//   the form is in. Without JavaScript the link opens the launch page instead.
// - [data-dialog-close] closes the dialog it is in (on a page without a dialog it goes back).
// - The compare button is enabled only when exactly two runs are picked (the server checks too).
(function () {
  document.addEventListener("htmx:afterSwap", function (e) {
    var dialog = document.getElementById("launch-dialog");
    if (dialog && e.target && dialog.contains(e.target) && !dialog.open) dialog.showModal();
  });
  document.addEventListener("click", function (e) {
    var close = e.target.closest ? e.target.closest("[data-dialog-close]") : null;
    if (!close) return;
    var dialog = close.closest("dialog");
    if (dialog) dialog.close(); else history.back();
  });
  function syncCompare() {
    var picked = document.querySelectorAll("[data-compare-pick]:checked").length;
    document.querySelectorAll("[data-compare-button]").forEach(function (b) { b.disabled = picked !== 2; });
  }
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("[data-compare-pick]")) syncCompare();
  });
  document.addEventListener("htmx:afterSettle", syncCompare);
  document.addEventListener("DOMContentLoaded", syncCompare);
})();
