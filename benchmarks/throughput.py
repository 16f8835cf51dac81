"""End-to-end throughput of a running radbatch against the raw speed of the same models.

    RADBATCH_ADMIN_TOKEN=secret make run       # in one terminal
    .venv/bin/python -m benchmarks.throughput --token secret --n 1000

1. Pushes N images from a folder through the REST API (an open job, chunked uploads, close),
   polls until the job finishes, and times upload and processing.
2. In this process, times the same served models on the same images: decode + the shared
   preprocessing + predict, batch by batch, with nothing else (no HTTP, no Redis, no database).
Prints one table. Both parts run on the same machine in one run, so compare the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import requests
from tqdm import tqdm

DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih-cxr14-subset" / "images"


def push_through_api(url: str, token: str, paths: list[Path], chunk: int, timeout_s: float) -> dict:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    created = session.post(f"{url}/api/v1/jobs", data={"name": f"benchmark {len(paths)} images", "open": "true"})
    created.raise_for_status()
    job_id = created.json()["id"]
    for start in tqdm(range(0, len(paths), chunk), desc="upload", unit="chunk"):
        files = [("files", (f"benchmark/{p.name}", p.read_bytes(), "image/png")) for p in paths[start : start + chunk]]
        session.post(f"{url}/api/v1/jobs/{job_id}/files", files=files).raise_for_status()
    session.post(f"{url}/api/v1/jobs/{job_id}/close").raise_for_status()
    uploaded = time.perf_counter()
    with tqdm(total=len(paths), desc="predict", unit="img") as bar:
        while True:
            job = session.get(f"{url}/api/v1/jobs/{job_id}").json()
            bar.update(job["done"] + job["failed"] - bar.n)
            if job["status"] in ("done", "failed", "cancelled"):
                break
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"job {job_id} not finished after {timeout_s} s: {job}")
            time.sleep(0.5)
    finished = time.perf_counter()
    return {"job": job, "upload_s": uploaded - started, "total_s": finished - started}


def raw_model_throughput(paths: list[Path], model_names: list[str], batch_size: int) -> dict:
    import numpy as np

    from models.preprocess import decode_image, preprocess
    from models.registry import load_model

    models = [load_model(name) for name in model_names]
    for model in models:
        model.predict(np.zeros((1, model.input_size, model.input_size, model.channels), np.float32))
    started = time.perf_counter()
    for start in tqdm(range(0, len(paths), batch_size), desc="raw models", unit="batch"):
        images = [decode_image(p) for p in paths[start : start + batch_size]]
        for model in models:
            model.predict(np.stack([preprocess(im, model.input_size, model.channels) for im in images]))
    return {"total_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--token", required=True, help="an API token (e.g. RADBATCH_ADMIN_TOKEN)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder of images")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100, help="files per upload request")
    parser.add_argument("--models", default="cnn,unet", help="the served models, for the raw comparison")
    parser.add_argument("--batch-size", type=int, default=32, help="the worker's batch size (RADBATCH_BATCH_SIZE)")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[: args.n]
    if len(paths) < args.n:
        parser.error(f"only {len(paths)} images in {args.images}")
    api = push_through_api(args.url.rstrip("/"), args.token, paths, args.chunk, args.timeout)
    raw = raw_model_throughput(paths, args.models.split(","), args.batch_size)
    n = len(paths)
    rows = [
        ("API: upload only", api["upload_s"]),
        ("API: upload -> all predicted", api["total_s"]),
        ("raw models, in process", raw["total_s"]),
    ]
    print(f"\n{n} images, job {api['job']['id']}: {api['job']['done']} done, {api['job']['failed']} failed")
    print(f"{'path':32s} {'wall s':>8s} {'images/s':>9s} {'vs raw':>7s}")
    for label, seconds in rows:
        print(f"{label:32s} {seconds:8.1f} {n / seconds:9.1f} {raw['total_s'] / seconds:7.2f}")


if __name__ == "__main__":
    main()
