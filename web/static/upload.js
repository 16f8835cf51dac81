// Upload portal: collect files (picker, folder picker, drag-and-drop of folders), then send them to the API:
// create an open job, post the files in chunks with XHR progress, close the job, go to the job page.
"use strict";
(function () {
  const root = document.getElementById("uploader");
  // CSRF tokens expire after an hour; a long upload asks the server for a fresh one every ten minutes.
  let csrf = document.querySelector('meta[name="csrf-token"]').content;
  let csrfSince = Date.now();
  const CSRF_RENEW_MS = 10 * 60 * 1000;
  const chunkFiles = Number(root.dataset.chunkFiles);
  const chunkBytes = Number(root.dataset.chunkBytes);
  const maxFileBytes = Number(root.dataset.maxFileBytes);
  const startButton = document.getElementById("start");
  const bar = document.getElementById("upload-bar");
  const statusLine = document.getElementById("upload-status");
  const errorLine = document.getElementById("upload-error");
  let picked = []; // [{file, path}]

  function humanBytes(n) {
    if (n < 1024 * 1024) return (n / 1024).toFixed(0) + " KB";
    if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + " MB";
    return (n / 1024 / 1024 / 1024).toFixed(2) + " GB";
  }

  function setPicked(items) {
    picked = items.filter((item) => !item.path.split("/").some((part) => part.startsWith("."))); // .DS_Store etc.
    const bytes = picked.reduce((sum, item) => sum + item.file.size, 0);
    document.getElementById("selection").textContent = picked.length
      ? `${picked.length} files selected (${humanBytes(bytes)}).`
      : "Nothing selected yet.";
    startButton.disabled = picked.length === 0;
  }

  function fromInput(input) {
    setPicked(Array.from(input.files, (file) => ({ file, path: file.webkitRelativePath || file.name })));
  }

  // Drag and drop: walk dropped folders with webkitGetAsEntry / createReader (readEntries returns batches).
  function readAll(reader) {
    return new Promise((resolve, reject) => {
      const entries = [];
      const next = () => reader.readEntries((batch) => {
        if (batch.length === 0) resolve(entries);
        else { entries.push(...batch); next(); }
      }, reject);
      next();
    });
  }

  async function walk(entry, out) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, path: entry.fullPath.replace(/^\//, "") });
    } else if (entry.isDirectory) {
      for (const child of await readAll(entry.createReader())) await walk(child, out);
    }
  }

  async function fromDrop(event) {
    const entries = Array.from(event.dataTransfer.items)
      .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
      .filter(Boolean);
    const out = [];
    if (entries.length) {
      document.getElementById("selection").textContent = "Reading folders…";
      for (const entry of entries) await walk(entry, out);
    } else {
      for (const file of event.dataTransfer.files) out.push({ file, path: file.name });
    }
    setPicked(out);
  }

  async function freshCsrf(force) {
    if (!force && Date.now() - csrfSince < CSRF_RENEW_MS) return csrf;
    const response = await fetch(root.dataset.csrfUrl, { credentials: "same-origin" });
    if (!response.ok) throw new Error("your session has ended; log in again in another tab, then retry");
    csrf = (await response.json()).csrf_token;
    csrfSince = Date.now();
    return csrf;
  }

  // One Idempotency-Key per request, kept across its retries: a chunk whose response was lost is not stored twice.
  // crypto.randomUUID exists only on https or localhost, so build a version-4 UUID from getRandomValues.
  function newKey() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  async function send(url, form, onProgress, key) {
    const token = await freshCsrf(false);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", token);
      if (key) xhr.setRequestHeader("Idempotency-Key", key);
      xhr.responseType = "json";
      xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
        else reject(new Error((xhr.response && xhr.response.message) || `server answered ${xhr.status}`));
      };
      xhr.onerror = () => reject(new Error("network error; check your connection and try again"));
      xhr.send(form);
    });
  }

  function chunks(items) {
    const out = [];
    let current = [], bytes = 0;
    for (const item of items) {
      const size = item.file.size > maxFileBytes ? 0 : item.file.size;
      if (current.length && (current.length >= chunkFiles || bytes + size > chunkBytes)) {
        out.push(current); current = []; bytes = 0;
      }
      current.push(item); bytes += size;
    }
    if (current.length) out.push(current);
    return out;
  }

  async function sendWithRetry(url, form, onProgress) {
    const key = newKey();
    for (let attempt = 1; ; attempt++) {
      try { return await send(url, form, onProgress, key); }
      catch (error) {
        if (attempt >= 3 || /closed|cancelled|not found|log in again/.test(error.message)) throw error;
        if (/CSRF/.test(error.message)) await freshCsrf(true);
        statusLine.textContent = `Retrying after: ${error.message}`;
        await new Promise((r) => setTimeout(r, 1500 * attempt));
      }
    }
  }

  const warnLeaving = (e) => { e.preventDefault(); e.returnValue = ""; };

  async function upload() {
    window.addEventListener("beforeunload", warnLeaving); // leaving mid-upload would stop it
    startButton.disabled = true;
    errorLine.hidden = true;
    document.getElementById("upload-progress").hidden = false;
    const total = picked.reduce((sum, item) => sum + (item.file.size > maxFileBytes ? 0 : item.file.size), 0) || 1;
    const topFolder = picked[0].path.includes("/") ? picked[0].path.split("/")[0] : "";
    const create = new FormData();
    create.append("open", "true");
    create.append("priority", document.getElementById("job-priority").value);
    create.append("heatmaps", document.getElementById("job-heatmaps").checked ? "true" : "false");
    create.append("name", document.getElementById("job-name").value.trim() || topFolder || `${picked.length} files`);
    const job = await sendWithRetry(root.dataset.createUrl, create);
    const base = root.dataset.createUrl.replace(/\/$/, "") + "/" + job.id;
    let sentBytes = 0, sentFiles = 0;
    for (const chunk of chunks(picked)) {
      const form = new FormData();
      const tooLarge = [];
      for (const item of chunk) {
        if (item.file.size > maxFileBytes) { tooLarge.push({ path: item.path, size: item.file.size }); continue; }
        form.append("files", item.file, item.file.name);
        form.append("paths", item.path);
      }
      if (tooLarge.length) form.append("too_large", JSON.stringify(tooLarge));
      const chunkBytes = chunk.reduce((s, i) => s + (i.file.size > maxFileBytes ? 0 : i.file.size), 0);
      await sendWithRetry(base + "/files", form, (loaded) => {
        const pct = (100 * (sentBytes + Math.min(loaded, chunkBytes))) / total;
        bar.style.width = pct.toFixed(1) + "%";
        statusLine.textContent = `Uploading ${sentFiles} of ${picked.length} files… ${pct.toFixed(0)}%`;
      });
      sentBytes += chunkBytes; sentFiles += chunk.length;
    }
    statusLine.textContent = "Finishing…";
    await sendWithRetry(base + "/close", new FormData());
    bar.style.width = "100%";
    window.removeEventListener("beforeunload", warnLeaving);
    window.location.href = `/jobs/${job.id}`;
  }

  document.getElementById("pick-files").addEventListener("change", (e) => fromInput(e.target));
  document.getElementById("pick-folder").addEventListener("change", (e) => fromInput(e.target));
  const drop = document.getElementById("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => { e.preventDefault(); fromDrop(e).catch((err) => { errorLine.textContent = err.message; errorLine.hidden = false; }); });
  startButton.addEventListener("click", () => upload().catch((err) => {
    window.removeEventListener("beforeunload", warnLeaving);
    errorLine.textContent = `Upload stopped: ${err.message}`;
    errorLine.hidden = false;
    startButton.disabled = false;
  }));
})();
