// The worklist: fetch /api/v1/worklist with the filters every 5 s and draw one row per study, most suspicious
// first; each row has a review form (agree / disagree with the correct label / unsure, and a comment) that POSTs
// to /api/v1/studies/<uid>/reviews. Rows with an unsaved review are kept while the list refreshes.
"use strict";
(function () {
  const table = document.getElementById("worklist");
  if (!table) return;
  const body = table.querySelector("tbody");
  const form = document.getElementById("worklist-filters");
  const status = document.getElementById("worklist-status");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const text = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));

  function cell(content) {
    const td = document.createElement("td");
    td.textContent = content;
    return td;
  }

  function reviewCell(study) {
    const td = document.createElement("td");
    td.innerHTML =
      '<select name="verdict" aria-label="verdict"><option value="agree">agree</option>' +
      '<option value="disagree">disagree</option><option value="unsure">unsure</option></select> ' +
      '<select name="label" aria-label="correct label"><option value="">correct label…</option>' +
      '<option value="healthy">healthy</option><option value="disease">disease</option></select> ' +
      '<input name="comment" aria-label="comment" placeholder="comment" maxlength="2000" size="16"> ' +
      '<button type="button" class="save-review">Save review</button>';
    td.querySelector("button").addEventListener("click", () => save(study, td));
    td.addEventListener("input", () => td.closest("tr").classList.add("editing"));
    return td;
  }

  async function save(study, td) {
    const payload = {
      job_id: study.job_id,
      verdict: td.querySelector("[name=verdict]").value,
      label: td.querySelector("[name=label]").value || null,
      comment: td.querySelector("[name=comment]").value,
    };
    const response = await fetch(`/api/v1/studies/${study.study_instance_uid}/reviews`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(payload),
    });
    const answer = await response.json();
    status.textContent = response.ok
      ? `Saved: ${answer.verdict} for study ${answer.study_instance_uid}.`
      : `Not saved: ${answer.message}`;
    if (response.ok) td.closest("tr").remove();
  }

  function row(study, index) {
    const tr = document.createElement("tr");
    tr.className = "study";
    tr.dataset.study = study.study_instance_uid;
    tr.dataset.job = study.job_id;
    tr.append(cell(index + 1), cell(text(study.accession_number)), cell(text(study.study_date)));
    tr.append(cell(study.views.join(" ")));
    const probability = cell(study.probability === null ? "no frontal image" : study.probability.toFixed(3));
    probability.className = "probability";
    probability.title = study.threshold === null ? "" : `disease at or above ${study.threshold.toFixed(3)}`;
    tr.append(probability, cell(text(study.label)));
    const job = document.createElement("td");
    job.innerHTML = `<a href="${study.job_url}">job ${study.job_id}</a>`;
    tr.append(job, reviewCell(study));
    return tr;
  }

  async function refresh() {
    if (body.querySelector("tr.editing")) return; // never redraw under a review being written
    const query = new URLSearchParams([...new FormData(form)].filter(([, value]) => value));
    try {
      const response = await fetch(`${table.dataset.api}?${query}`, { credentials: "same-origin" });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.message);
      body.replaceChildren(...answer.studies.map(row));
      if (!answer.studies.length) body.innerHTML = '<tr><td colspan="8" class="muted">Nothing to review.</td></tr>';
    } catch (error) {
      status.textContent = `Could not load the worklist: ${error.message}`;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  refresh();
  setInterval(() => document.hidden || refresh(), 5000);
})();
