"""Per-stage times as the worker recorded them: its Prometheus histograms, scraped before and after a run."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

IMAGE_STAGES = "radbatch_worker_image_stage_seconds"
BATCH_STAGES = "radbatch_worker_batch_stage_seconds"
IMAGES = "radbatch_worker_images"


def scrape(url: str) -> dict[tuple[str, str, str], float]:
    """{(metric, label value, "sum"|"count"): value} for the stage histograms and the image counter."""
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    values: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if family.name in (IMAGE_STAGES, BATCH_STAGES) and sample.name.endswith(("_sum", "_count")):
                kind = sample.name.rsplit("_", 1)[1]
                values[(family.name, sample.labels["stage"], kind)] = sample.value
            elif family.name == IMAGES and sample.name.endswith("_total"):
                values[(IMAGES, sample.labels["outcome"], "count")] = sample.value
    return values


def per_stage(before: dict, after: dict) -> dict:
    """Milliseconds per image for each stage over the run, plus the mean queue wait per batch in seconds.

    Image stages (read, decode, preprocess, thumbnail) are thread time per image; batch stages (read_all,
    inference, db_write, commit, total) are a batch's wall time divided by its images.
    """

    def delta(metric: str, stage: str, kind: str) -> float:
        return after.get((metric, stage, kind), 0.0) - before.get((metric, stage, kind), 0.0)

    images = sum(delta(IMAGES, outcome, "count") for outcome in ("done", "failed"))
    stages: dict[str, float] = {}
    for stage in ("read", "decode", "preprocess", "thumbnail"):
        count = delta(IMAGE_STAGES, stage, "count")
        if count:
            stages[f"{stage}_ms"] = 1000 * delta(IMAGE_STAGES, stage, "sum") / count
    for stage in ("read_all", "inference", "heatmaps", "db_write", "commit", "total"):
        if images:
            stages[f"{stage}_ms"] = 1000 * delta(BATCH_STAGES, stage, "sum") / images
    batches = delta(BATCH_STAGES, "queue_wait", "count")
    if batches:
        stages["queue_wait_s_per_batch"] = delta(BATCH_STAGES, "queue_wait", "sum") / batches
        stages["batches"] = batches
    stages["images"] = images
    return stages
