"""Per-stage times as the worker recorded them: its Prometheus histograms and CPU counters, scraped before and
after a run."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

IMAGE_STAGES = "radbatch_worker_image_stage_seconds"
BATCH_STAGES = "radbatch_worker_batch_stage_seconds"
IMAGES = "radbatch_worker_images"
STAGE_CPU = "radbatch_worker_stage_cpu_seconds"
IMAGE_STAGE_NAMES = ("read", "decode", "preprocess", "thumbnail")
BATCH_STAGE_NAMES = ("read_all", "inference", "heatmaps", "db_write", "commit", "total")


class ScrapeError(RuntimeError):
    """The worker's metrics endpoint could not be read; the message says where and why."""


def scrape(url: str) -> dict[tuple[str, str, str], float]:
    """{(metric, label value, "sum"|"count"): value} for the stage histograms, CPU counters and image counter."""
    hint = "is the worker running, and on this RADBATCH_WORKER_METRICS_PORT? (--worker-metrics URL sets it)"
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        families = list(text_string_to_metric_families(response.text))
    except requests.HTTPError as error:
        raise ScrapeError(
            f"cannot scrape the worker's metrics at {url}: {error.response.status_code}; {hint}"
        ) from None
    except requests.ConnectionError:
        raise ScrapeError(f"cannot scrape the worker's metrics at {url}: nothing answers there; {hint}") from None
    except requests.RequestException as error:
        raise ScrapeError(f"cannot scrape the worker's metrics at {url}: {type(error).__name__}; {hint}") from None
    except ValueError:
        raise ScrapeError(f"{url} did not answer with Prometheus metrics; {hint}") from None
    values: dict[tuple[str, str, str], float] = {}
    for family in families:
        for sample in family.samples:
            if family.name in (IMAGE_STAGES, BATCH_STAGES) and sample.name.endswith(("_sum", "_count")):
                kind = sample.name.rsplit("_", 1)[1]
                values[(family.name, sample.labels["stage"], kind)] = sample.value
            elif family.name == IMAGES and sample.name.endswith("_total"):
                values[(IMAGES, sample.labels["outcome"], "count")] = sample.value
            elif family.name == STAGE_CPU and sample.name.endswith("_total"):
                values[(STAGE_CPU, sample.labels["stage"], "sum")] = sample.value
    if "radbatch_worker_" not in response.text:
        raise ScrapeError(f"{url} answers, but not with the radbatch worker's metrics; {hint}")
    return values


def per_stage(before: dict, after: dict) -> dict:
    """Milliseconds per image for each stage over the run, plus the mean queue wait per batch in seconds.

    Image stages (read, decode, preprocess, thumbnail) are thread time per image; batch stages (read_all,
    inference, db_write, commit, total) are a batch's wall time divided by its images. `cpu_<stage>_ms` is CPU
    time per image: of the decoding thread for image stages, of the whole worker process for batch stages.
    """

    def delta(metric: str, stage: str, kind: str) -> float:
        return after.get((metric, stage, kind), 0.0) - before.get((metric, stage, kind), 0.0)

    images = sum(delta(IMAGES, outcome, "count") for outcome in ("done", "failed"))
    stages: dict[str, float] = {}
    for stage in IMAGE_STAGE_NAMES:
        count = delta(IMAGE_STAGES, stage, "count")
        if count:
            stages[f"{stage}_ms"] = 1000 * delta(IMAGE_STAGES, stage, "sum") / count
            stages[f"cpu_{stage}_ms"] = 1000 * delta(STAGE_CPU, stage, "sum") / count
    for stage in BATCH_STAGE_NAMES:
        if images:
            stages[f"{stage}_ms"] = 1000 * delta(BATCH_STAGES, stage, "sum") / images
            stages[f"cpu_{stage}_ms"] = 1000 * delta(STAGE_CPU, stage, "sum") / images
    if images:
        named = ("read_all", "inference", "heatmaps", "db_write", "commit")
        stages["cpu_other_ms"] = stages["cpu_total_ms"] - sum(stages[f"cpu_{stage}_ms"] for stage in named)
        stages["cpu_without_inference_ms"] = stages["cpu_total_ms"] - stages["cpu_inference_ms"]
    batches = delta(BATCH_STAGES, "queue_wait", "count")
    if batches:
        stages["queue_wait_s_per_batch"] = delta(BATCH_STAGES, "queue_wait", "sum") / batches
        stages["batches"] = batches
    stages["images"] = images
    return stages


def cpu_table(stages: dict) -> list[str]:
    """Lines: the worker's CPU milliseconds per image by stage, and the total without inference."""
    image = ", ".join(f"{k} {stages[f'cpu_{k}_ms']:.2f}" for k in IMAGE_STAGE_NAMES if f"cpu_{k}_ms" in stages)
    batch = ", ".join(
        f"{k} {stages[f'cpu_{k}_ms']:.2f}" for k in (*BATCH_STAGE_NAMES, "other") if f"cpu_{k}_ms" in stages
    )
    lines = [f"worker CPU ms/image, decoding thread: {image}", f"worker CPU ms/image, whole process: {batch}"]
    if "cpu_without_inference_ms" in stages:
        lines.append(f"worker CPU ms/image without inference: {stages['cpu_without_inference_ms']:.2f}")
    return lines
