// Live job page: poll the job's JSON every 2 s; when its counts change, re-render the result table
// (server-rendered by the same template); once the job has finished, hide Cancel, show the finish time and stop.
"use strict";
(function () {
  const summary = document.getElementById("summary");
  if (!summary) return;
  const finishedStates = ["done", "failed", "cancelled"];
  const utcMinute = (iso) => new Date(iso).toISOString().slice(0, 16).replace("T", " "); // as the server prints it
  let last = `${summary.dataset.status}:${summary.dataset.finished}`;

  function render(job) {
    const finished = job.done + job.failed;
    const pct = (n) => (job.total ? (100 * n) / job.total : 0) + "%";
    document.getElementById("job-status").innerHTML = `<span class="badge ${job.status}">${job.status}</span>`;
    const progress = document.getElementById("job-progress");
    progress.querySelector(".bar.done").style.width = pct(job.done);
    progress.querySelector(".bar.failed").style.width = pct(job.failed);
    progress.querySelector(".small").textContent =
      `${finished} / ${job.total}` + (job.failed ? ` · ${job.failed} failed` : "");
    const over = finishedStates.includes(job.status) && !job.is_open;
    const cancel = document.getElementById("cancel-job");
    if (cancel) cancel.hidden = over;
    document.getElementById("job-finished").textContent = job.finished_at ? ` · finished ${utcMinute(job.finished_at)} UTC` : "";
  }

  async function poll() {
    try {
      const response = await fetch(summary.dataset.jobUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`status ${response.status}`);
      const job = await response.json();
      render(job);
      const key = `${job.status}:${job.done + job.failed}:${job.total}`;
      if (key !== last) {
        last = key;
        const rows = await fetch(summary.dataset.rowsUrl, { credentials: "same-origin" });
        if (rows.ok) document.getElementById("results").innerHTML = await rows.text();
      }
      if (finishedStates.includes(job.status) && !job.is_open) return;
    } catch (error) {
      console.warn("job refresh failed; retrying", error);
    }
    setTimeout(poll, document.hidden ? 10000 : 2000);
  }

  if (!finishedStates.includes(summary.dataset.status) || summary.dataset.open === "1") setTimeout(poll, 2000);
})();
