"""End-to-end throughput of a running radbatch against the raw speed of the same models, with per-stage times.

    RADBATCH_ADMIN_TOKEN=secret make run       # in one terminal
    .venv/bin/python -m benchmarks.throughput --token secret --n 1000 --corpus 128,1024

For each corpus (benchmarks/corpus.py: 128-px PNGs, full-resolution PNGs, or DICOM made from them):
1. Pushes N files through the REST API (an open job, chunked uploads, close) and polls until every image is
   predicted, first in a job without heat maps, then in one with them; scrapes the worker's metrics endpoint
   before and after each, for its per-stage times.
2. Sends single-image jobs one after another and takes the median time from upload to result.
3. In this process, times the raw path (benchmarks/raw.py) on the same files: the compiled runtime
   (RADBATCH_RUNTIME) and eager Keras, each with the worker's thread pool, batch by batch; and the cost of heat
   maps: each batch on the compiled runtime without and with Grad-CAM drawn and written, alternating.
Prints the ratios, all measured in this one run. The raw path decodes with the worker's own decoder
(`formats.read_upload`: DICOM through `dicomio.read.decode_dicom`), so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from tqdm import tqdm

from benchmarks import corpus as corpora
from benchmarks import raw, stages
from models.catalogue import load_catalogue
from models.registry import input_spec
from settings import Settings
from worker.reading import decode_threads

GOALS = {"compiled_vs_eager": 1.5, "end_to_end_vs_raw": 0.9, "single_image_overhead_ms": 150, "heatmaps_vs_none": 0.8}


def chunks(paths: list[Path], most_files: int, most_bytes: int) -> list[list[Path]]:
    """`paths` in upload requests of at most `most_files` files and `most_bytes` bytes (a larger file alone)."""
    found: list[list[Path]] = []
    size = 0
    for path in paths:
        file_size = path.stat().st_size
        if not found or len(found[-1]) >= most_files or size + file_size > most_bytes:
            found.append([])
            size = 0
        found[-1].append(path)
        size += file_size
    return found


def push_through_api(
    url: str, token: str, files: corpora.Corpus, chunk: int, timeout_s: float, heatmaps: bool = True, chunk_mb: int = 64
) -> dict:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    form = {"name": f"benchmark {files.name}", "open": "true", "heatmaps": str(heatmaps).lower()}
    created = session.post(f"{url}/api/v1/jobs", data=form)
    created.raise_for_status()
    job_id = created.json()["id"]
    for request in tqdm(chunks(files.paths, chunk, chunk_mb * 2**20), desc=f"upload {files.name}", unit="request"):
        parts = [("files", (f"benchmark/{p.name}", p.read_bytes(), files.content_type)) for p in request]
        session.post(f"{url}/api/v1/jobs/{job_id}/files", files=parts).raise_for_status()
    session.post(f"{url}/api/v1/jobs/{job_id}/close").raise_for_status()
    uploaded = time.perf_counter()
    job = wait_for_job(session, url, job_id, started, timeout_s, len(files.paths))
    return {"job": job, "upload_s": uploaded - started, "total_s": time.perf_counter() - started}


def wait_for_job(session, url: str, job_id: int, started: float, timeout_s: float, n: int, poll_s: float = 0.5):
    with tqdm(total=n, desc="predict", unit="img", disable=n == 1) as bar:
        while True:
            job = session.get(f"{url}/api/v1/jobs/{job_id}").json()
            bar.update(job["done"] + job["failed"] - bar.n)
            if job["status"] in ("done", "failed", "cancelled"):
                return job
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"job {job_id} not finished after {timeout_s} s: {job}")
            time.sleep(poll_s)


def single_image_jobs(url: str, token: str, files: corpora.Corpus, count: int, timeout_s: float) -> list[float]:
    """Seconds from the upload of a one-file job to its result, one job at a time."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    times = []
    for path in files.paths[:count]:
        started = time.perf_counter()
        part = [("files", (f"single/{path.name}", path.read_bytes(), files.content_type))]
        created = session.post(f"{url}/api/v1/jobs", data={"name": "benchmark single"}, files=part)
        created.raise_for_status()
        wait_for_job(session, url, created.json()["id"], started, timeout_s, 1, poll_s=0.01)
        times.append(time.perf_counter() - started)
    return times


def load_models(names: list[str], runtime: str, settings: Settings) -> dict:
    from models.registry import load_model

    return {
        name: load_model(name, runtime=runtime, cache_dir=settings.onnx_cache_dir, threads=settings.inference_threads)
        for name in names
    }


def measure(args, settings: Settings, name: str, workdir: Path) -> dict:
    files = corpora.build(name, args.n, workdir / name)
    model_names = args.models.split(",")
    target_size = max(input_spec(model)[0] for model in model_names)  # as the worker reduces DICOM
    decode, decoder = raw.choose_decoder(files.paths[0], target_size)
    result: dict = {"corpus": name, "n": len(files.paths), "decoder": decoder, "load_before": os.getloadavg()}
    for suffix, heatmaps in (("_without_heatmaps", False), ("", True)):  # the same files, one job each
        before = stages.scrape(args.worker_metrics)
        api = push_through_api(args.url, args.token, files, args.chunk, args.timeout, heatmaps, args.chunk_mb)
        result[f"stages{suffix}"] = stages.per_stage(before, stages.scrape(args.worker_metrics))
        result[f"api{suffix}"] = {k: api[k] for k in ("upload_s", "total_s")} | {
            k: api["job"][k] for k in ("id", "status", "done", "failed")
        }
    singles = single_image_jobs(args.url, args.token, files, args.single, args.timeout)
    result["single_job_p50_ms"] = 1000 * float(np.median(singles))

    pool = ThreadPoolExecutor(max_workers=decode_threads(settings))  # sized as the worker's
    for label, runtime in (("compiled", args.runtime), ("eager", "keras"))[: 1 if args.no_eager else 2]:
        models = load_models(model_names, runtime, settings)
        result[f"raw_{label}"] = raw.run(files.paths, models, args.batch_size, pool, decode) | {"runtime": runtime}
        if label == "compiled":
            single = raw.single_image_times(files.paths[: args.single], models, decode)
            result["raw_single_p50_ms"] = 1000 * float(np.median(single))
            folder = workdir / name / "heatmaps"
            result["heatmap_cost"] = raw.heatmap_cost(files.paths, models, args.batch_size, pool, decode, folder)
    pool.shutdown()
    return result | {"ratios": ratios(result, model_names), "load_after": os.getloadavg()}


def ratios(result: dict, model_names: list[str]) -> dict:
    compiled, eager, heat = result["raw_compiled"], result.get("raw_eager"), result["heatmap_cost"]
    found = {"compiled_vs_eager_raw": eager["total_s"] / compiled["total_s"]} if eager else {}
    without_s = heat["prepare_s"] + heat["plain_s"]
    found["heatmaps_vs_none_raw"] = without_s / (heat["prepare_s"] + heat["with_s"] + heat["heatmaps_s"])
    for model in model_names if eager else []:
        found[f"compiled_vs_eager_{model}"] = eager["inference_s"][model] / compiled["inference_s"][model]
    if result["api"]:
        found["heatmaps_vs_none_api"] = result["api_without_heatmaps"]["total_s"] / result["api"]["total_s"]
    if result["api"] and result["stages"].get("heatmaps_ms"):
        stages_ms = result["stages"]
        found["worker_without_heatmaps_share"] = 1 - stages_ms["heatmaps_ms"] / stages_ms["total_ms"]
    if result["api"]:
        found["end_to_end_vs_compiled_raw"] = compiled["total_s"] / result["api"]["total_s"]
        found["single_job_overhead_ms"] = result["single_job_p50_ms"] - result["raw_single_p50_ms"]
    return found


def print_table(result: dict, args) -> None:
    n, api, compiled, eager = result["n"], result["api"], result["raw_compiled"], result.get("raw_eager")
    print(f"\ncorpus {result['corpus']}: {n} files, batch {args.batch_size}, decoder {result['decoder']}")
    load = " -> ".join(", ".join(f"{x:.1f}" for x in result[k]) for k in ("load_before", "load_after"))
    print(f"load average (1, 5, 15 min) before -> after: {load}")
    if api:
        print(f"job {api['id']}: {api['status']}, {api['done']} done, {api['failed']} failed")
    else:
        print(f"API: skipped ({result['api_skipped']})")
    rows = [("raw, compiled (" + compiled["runtime"] + ")", compiled["total_s"])]
    rows += [("raw, eager Keras", eager["total_s"])] if eager else []
    if api:
        without = result["api_without_heatmaps"]
        rows = [
            ("API: upload only", api["upload_s"]),
            ("API: upload -> all predicted", api["total_s"]),
            ("API: the same, no heat maps", without["total_s"]),
        ] + rows
    print(f"{'path':32s} {'wall s':>8s} {'images/s':>9s} {'vs compiled raw':>16s}")
    for label, seconds in rows:
        print(f"{label:32s} {seconds:8.2f} {n / seconds:9.1f} {compiled['total_s'] / seconds:16.2f}")
    eager_prepare = f", {1000 * eager['prepare_s'] / n:.2f} eager run" if eager else ""
    print(
        f"raw decode + preprocess (thread pool), ms/image: {1000 * compiled['prepare_s'] / n:.2f} compiled run"
        + eager_prepare
    )
    print(
        "model inference, ms/image: "
        + ", ".join(
            (f"{m} {1000 * eager['inference_s'][m] / n:.2f} eager -> " if eager else f"{m} ")
            + f"{1000 * s / n:.2f} compiled"
            for m, s in compiled["inference_s"].items()
        )
    )
    heat = result["heatmap_cost"]
    print(
        f"heat maps, raw, ms/image (same batches, alternating): prepare {1000 * heat['prepare_s'] / n:.2f}, "
        f"inference in the plain pass {1000 * heat['plain_s'] / n:.2f}, "
        f"in the heat-map pass {1000 * heat['with_s'] / n:.2f}, "
        f"Grad-CAM + PNG {1000 * heat['heatmaps_s'] / n:.2f}"
    )
    if api:
        s = result["stages"]
        names = ["read", "decode", "preprocess", "thumbnail", "read_all", "inference", "heatmaps", "db_write"]
        names += ["commit", "total"]
        print("worker stages, ms/image: " + ", ".join(f"{k} {s[k + '_ms']:.2f}" for k in names if k + "_ms" in s))
        print("\n".join(stages.cpu_table(s)))
        print(f"queue wait: {s.get('queue_wait_s_per_batch', float('nan')):.2f} s per batch (since its newest upload)")
        print(
            f"single-image job p50 {result['single_job_p50_ms']:.0f} ms; raw single image p50 "
            f"{result['raw_single_p50_ms']:.0f} ms"
        )
    r = result["ratios"]
    checks = [
        (f"compiled vs eager ({k.rsplit('_', 1)[-1]})", v, GOALS["compiled_vs_eager"], ">=")
        for k, v in r.items()
        if k.startswith("compiled_vs_eager_") and k != "compiled_vs_eager_raw"
    ]
    checks.append(("with heat maps vs without (raw)", r["heatmaps_vs_none_raw"], GOALS["heatmaps_vs_none"], ">="))
    if api:
        checks.append(("with heat maps vs without (API)", r["heatmaps_vs_none_api"], GOALS["heatmaps_vs_none"], ">="))
    if "worker_without_heatmaps_share" in r:
        share = r["worker_without_heatmaps_share"]
        checks.append(("worker time not on heat maps", share, GOALS["heatmaps_vs_none"], ">="))
    if api:
        checks.append(("end to end vs compiled raw", r["end_to_end_vs_compiled_raw"], GOALS["end_to_end_vs_raw"], ">="))
        checks.append(
            ("single job - raw single (ms)", r["single_job_overhead_ms"], GOALS["single_image_overhead_ms"], "<=")
        )
    for label, value, goal, sense in checks:
        met = value >= goal if sense == ">=" else value <= goal
        print(f"  {label:34s} {value:8.3f}  goal {sense} {goal}  {'met' if met else 'NOT met'}")


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=f"http://127.0.0.1:{settings.port}")
    parser.add_argument("--token", required=True, help="an API token (e.g. RADBATCH_ADMIN_TOKEN)")
    parser.add_argument("--corpus", default="128", help=f"comma-separated, of {', '.join(corpora.CORPORA)}")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100, help="files per upload request, at most")
    parser.add_argument(
        "--chunk-mb", type=int, default=64, help="MB per upload request, at most (the server takes up to 96 by default)"
    )
    parser.add_argument("--no-eager", action="store_true", help="skip the eager Keras pass of the raw path")
    served = [e.name for e in load_catalogue(settings.models_dir).to_run if e.runtime == "keras-weights"]
    parser.add_argument("--models", default=",".join(served), help="built-in models (default: the served ones)")
    parser.add_argument("--runtime", default=settings.runtime, help="the compiled runtime for the raw path")
    parser.add_argument("--batch-size", type=int, default=settings.batch_size, help="as RADBATCH_BATCH_SIZE")
    parser.add_argument("--single", type=int, default=10, help="single-image jobs to time")
    parser.add_argument(
        "--worker-metrics", default=f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", help="worker /metrics"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where corpus files are written (default: temp)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = parser.parse_args(argv)
    args.url = args.url.rstrip("/")
    names = args.corpus.split(",")
    if unknown := set(names) - set(corpora.CORPORA):
        parser.error(f"unknown corpus {', '.join(sorted(unknown))}; choose from {', '.join(corpora.CORPORA)}")

    try:
        stages.scrape(args.worker_metrics)  # before anything is sent: say now if the per-stage times are out of reach
        with tempfile.TemporaryDirectory(prefix="radbatch-bench-") as tmp:
            results = [measure(args, settings, name, args.workdir or Path(tmp)) for name in names]
    except stages.ScrapeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.json:
        print(json.dumps({"batch_size": args.batch_size, "runtime": args.runtime, "results": results}, indent=2))
        return
    for result in results:
        print_table(result, args)


if __name__ == "__main__":
    main()
