// Image viewer on the job page. OpenSeadragon (vendored) shows one result at full resolution with zoom and pan;
// beside it the row's predictions. Next / previous walk the job's results with the page's filters (through the
// API, across pages); window/level is a CSS filter on the viewer's canvas; a heat map per model, when the server
// has one, is an overlay image with adjustable opacity.
"use strict";
(function () {
  const dialog = document.getElementById("viewer");
  const results = document.getElementById("results");
  if (!dialog || !results || !window.OpenSeadragon) return;
  const $ = (id) => document.getElementById(id);
  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(values[key]));
  const MODEL_ORDER = (dialog.dataset.models || "").split(",").filter(Boolean); // the catalogue's served models
  const state = { rows: [], index: 0, page: 1, pages: 1, perPage: 50, total: 0 };
  let viewer = null;
  let heatmaps = {}; // model -> object URL of the current image's heat map
  let heatmapElement = null;
  let showing = 0; // bumped on every image change, so late answers about an earlier image are dropped
  let steps = Promise.resolve(); // presses are applied in order, even while a page of results loads

  async function loadPage(page) {
    const params = new URLSearchParams(window.location.search); // the same filters as the table
    params.set("page", page);
    params.set("per_page", state.perPage);
    const response = await fetch(`${dialog.dataset.resultsUrl}?${params}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`could not load results page ${page} (status ${response.status})`);
    const body = await response.json();
    Object.assign(state, { rows: body.results, page: body.page, pages: body.pages, total: body.total });
  }

  function showMessage(text) {
    $("viewer-message").textContent = text;
    $("viewer-message").hidden = !text;
  }

  function applyWindowLevel() {
    const canvas = viewer && viewer.drawer && viewer.drawer.canvas;
    if (canvas) canvas.style.filter = `brightness(${$("wl-brightness").value}%) contrast(${$("wl-contrast").value}%)`;
  }

  function placeHeatmap() {
    if (heatmapElement) viewer.removeOverlay(heatmapElement);
    heatmapElement = null;
    const item = viewer.world.getItemAt(0);
    const url = heatmaps[$("heatmap-model").value];
    if (!item || !url || !$("heatmap-toggle").checked) return;
    heatmapElement = Object.assign(document.createElement("img"), { className: "heatmap", src: url, alt: "" });
    heatmapElement.style.opacity = $("heatmap-opacity").value / 100;
    viewer.addOverlay({ element: heatmapElement, location: item.getBounds() }); // stretched over the whole image
  }

  function clearHeatmaps() {
    Object.values(heatmaps).forEach((url) => URL.revokeObjectURL(url));
    heatmaps = {};
    if (viewer) placeHeatmap();
  }

  async function loadHeatmaps(imageId, token) {
    const models = dialog.dataset.heatmapModels.split(",");
    const found = {};
    await Promise.all(models.map(async (model) => {
      try {
        const url = fill(dialog.dataset.heatmapUrl, { id: imageId, model });
        const response = await fetch(url, { credentials: "same-origin" });
        if (response.ok) found[model] = await response.blob();
      } catch (error) {
        console.warn(`no heat map for ${model}`, error);
      }
    }));
    if (token !== showing) return;
    const available = models.filter((model) => found[model]);
    available.forEach((model) => { heatmaps[model] = URL.createObjectURL(found[model]); });
    $("heatmap-model").replaceChildren(...available.map((model) => new Option(model, model)));
    $("heatmap-controls").hidden = available.length === 0; // the server has none (yet) for this image
    placeHeatmap();
  }

  function cell(text, className) {
    return Object.assign(document.createElement("td"), { textContent: text, className: className || "" });
  }

  function breakingAtSlashes(path) {
    return path.split("/").flatMap((part, i, parts) =>
      (i < parts.length - 1 ? [`${part}/`, document.createElement("wbr")] : [part]));
  }

  function renderPanel(row) {
    $("viewer-path").replaceChildren(...breakingAtSlashes(row.path));
    $("viewer-status").replaceChildren(Object.assign(document.createElement("span"), {
      className: `badge ${row.status}`, textContent: row.status }));
    $("viewer-error").textContent = row.error || "";
    $("viewer-error").hidden = !row.error;
    const rank = (name) => (MODEL_ORDER.includes(name) ? MODEL_ORDER.indexOf(name) : MODEL_ORDER.length);
    const names = Object.keys(row.predictions).sort((a, b) => rank(a) - rank(b));
    $("viewer-predictions").replaceChildren(...names.map((name) => {
      const p = row.predictions[name];
      const tr = document.createElement("tr");
      tr.title = `model ${p.model_version}`;
      tr.append(cell(name), cell(p.probability.toFixed(3), `prob ${p.label}`), cell(p.label, `label ${p.label}`),
        cell(p.threshold.toFixed(3)));
      return tr;
    }));
    const none = row.status === "failed" ? "none: the file failed" : "no predictions yet";
    if (!names.length) $("viewer-predictions").replaceChildren(Object.assign(cell(none, "muted"), { colSpan: 4 }));
    const prevalence = names.map((name) => row.predictions[name].prevalence).find((value) => value != null);
    $("viewer-prevalence").textContent = prevalence == null ? "" :
      `label: disease at or above the threshold; probabilities at a disease prevalence of ${prevalence.toFixed(3)}`;
    $("viewer-prevalence").hidden = prevalence == null;
    const findings = Object.entries(row.findings || {});
    $("viewer-findings").hidden = findings.length === 0;
    $("viewer-findings").querySelector("ul").replaceChildren(...findings.map(([name, f]) => Object.assign(
      document.createElement("li"), { textContent: `${name}: ${Number(f.probability).toFixed(3)} ${f.label || ""}` +
        (f.threshold !== undefined ? ` (threshold ${Number(f.threshold).toFixed(3)}` +
          (f.operating_point ? `, ${f.operating_point}` : "") + ")" : "") +
        (f.validated === false ? " not validated" : "") })));
    const position = (state.page - 1) * state.perPage + state.index + 1;
    $("viewer-position").textContent = `${position} of ${state.total}`;
    $("viewer-prev").disabled = position <= 1;
    $("viewer-next").disabled = position >= state.total;
  }

  function show() {
    const row = state.rows[state.index];
    if (!row) return;
    const token = ++showing;
    renderPanel(row);
    const imageUrl = fill(dialog.dataset.imageUrl, { id: row.id });
    $("viewer-full").href = imageUrl;
    $("viewer-full").hidden = false;
    clearHeatmaps();
    showMessage("");
    viewer.open({ type: "image", url: imageUrl });
    loadHeatmaps(row.id, token);
  }

  async function move(delta) {
    try {
      let index = state.index + delta;
      if (index < 0 || index >= state.rows.length) {
        const page = state.page + Math.sign(delta);
        if (page < 1 || page > state.pages) return;
        await loadPage(page);
        index = delta > 0 ? 0 : state.rows.length - 1;
      }
      state.index = index;
      show();
    } catch (error) {
      showMessage(error.message);
    }
  }

  function step(delta) {
    steps = steps.then(() => move(delta));
  }

  function makeViewer() {
    viewer = OpenSeadragon({
      element: $("viewer-canvas"),
      prefixUrl: dialog.dataset.osdImages,
      drawer: "canvas",
      showNavigator: true,
      navigatorPosition: "BOTTOM_RIGHT",
      maxZoomPixelRatio: 8,
      visibilityRatio: 0.5,
      gestureSettingsMouse: { clickToZoom: false },
    });
    viewer.addHandler("open", () => { applyWindowLevel(); placeHeatmap(); });
    viewer.addHandler("open-failed", () => {
      const row = state.rows[state.index];
      viewer.close();
      $("viewer-full").hidden = true;
      $("viewer-zoom").textContent = "";
      showMessage(`This image cannot be shown${row && row.error ? ": " + row.error : "."}`);
    });
    viewer.addHandler("zoom", (event) => {
      const item = viewer.world.getItemAt(0);
      if (item) $("viewer-zoom").textContent = `zoom ${Math.round(100 * item.viewportToImageZoom(event.zoom))}%`;
    });
    viewer.addHandler("canvas-drag", (event) => { // Shift + drag: window/level instead of panning
      if (!event.shift) return;
      event.preventDefaultAction = true;
      $("wl-contrast").value = Number($("wl-contrast").value) + event.delta.x;
      $("wl-brightness").value = Number($("wl-brightness").value) - event.delta.y;
      applyWindowLevel();
    });
  }

  async function open(imageId) {
    const table = results.querySelector("table.results");
    state.perPage = Number(table.dataset.perPage);
    await loadPage(Number(table.dataset.page));
    state.index = Math.max(0, state.rows.findIndex((row) => row.id === imageId));
    if (!dialog.open) dialog.showModal();
    if (!viewer) makeViewer(); // after showModal, so OpenSeadragon measures a visible container
    show();
  }

  results.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-image-id]");
    if (!row || event.target.closest("a")) return;
    open(Number(row.dataset.imageId)).catch((error) => window.alert(error.message));
  });
  document.addEventListener("keydown", (event) => { // capture phase: before OpenSeadragon pans with the arrows
    if (!dialog.open || event.target.closest("input, select, textarea")) return;
    const delta = { ArrowRight: 1, PageDown: 1, ArrowLeft: -1, PageUp: -1 }[event.key];
    if (!delta) return;
    event.preventDefault();
    event.stopPropagation();
    step(delta);
  }, true);
  $("viewer-prev").addEventListener("click", () => step(-1));
  $("viewer-next").addEventListener("click", () => step(1));
  $("viewer-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { showing++; clearHeatmaps(); if (viewer) viewer.close(); });
  ["wl-brightness", "wl-contrast"].forEach((id) => $(id).addEventListener("input", applyWindowLevel));
  $("wl-reset").addEventListener("click", () => {
    $("wl-brightness").value = 100;
    $("wl-contrast").value = 100;
    applyWindowLevel();
  });
  $("heatmap-toggle").addEventListener("change", placeHeatmap);
  $("heatmap-model").addEventListener("change", placeHeatmap);
  $("heatmap-opacity").addEventListener("input", () => {
    if (heatmapElement) heatmapElement.style.opacity = $("heatmap-opacity").value / 100;
  });
})();
