"""Fair lanes, measured: with a large bulk job running, how long a 1-image urgent job and a 10-image normal job of
another user wait until they are predicted (p50 and p95 over --tries). Against a running radbatch:

    .venv/bin/python -m benchmarks.lanes --url http://127.0.0.1:5000 --token BULK_TOKEN --other-token OTHER_TOKEN

The bulk job (--bulk images, 128-px PNGs made here) is sent with priority=bulk by the first token; then, one try at
a time, an urgent 1-image job and a normal 10-image job by the other token. The goal (issue 15): each waits at most
one batch time plus 1 s. It cancels the bulk job at the end.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import requests
from PIL import Image as PILImage


def png(seed: int, size: int = 128) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.base = f"{url.rstrip('/')}/api/v1"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def create(self, files: list[tuple[str, bytes]], priority: str, is_open: bool = False) -> int:
        parts = [("files", (name, data, "image/png")) for name, data in files]
        data = {"priority": priority, **({"open": "true"} if is_open else {})}
        response = self.http.post(f"{self.base}/jobs", data=data, files=parts, timeout=300)
        response.raise_for_status()
        return response.json()["id"]

    def add(self, job_id: int, files: list[tuple[str, bytes]]) -> None:
        parts = [("files", (name, data, "image/png")) for name, data in files]
        self.http.post(f"{self.base}/jobs/{job_id}/files", files=parts, timeout=300).raise_for_status()

    def job(self, job_id: int) -> dict:
        response = self.http.get(f"{self.base}/jobs/{job_id}", timeout=30)
        response.raise_for_status()
        return response.json()

    def wait(self, job_id: int, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.job(job_id)["status"] in ("done", "failed", "cancelled"):
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} not finished after {timeout:.0f} s")


def send_bulk(client: Client, images: int, chunk: int) -> int:
    job_id = client.create([], "bulk", is_open=True)
    for start in range(0, images, chunk):
        client.add(job_id, [(f"bulk/{i}.png", png(i)) for i in range(start, min(images, start + chunk))])
    client.http.post(f"{client.base}/jobs/{job_id}/close", timeout=30).raise_for_status()
    return job_id


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True, help="the bulk job's user")
    parser.add_argument("--other-token", required=True, help="another user, for the urgent and normal jobs")
    parser.add_argument("--bulk", type=int, default=5000)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    bulk, other = Client(args.url, args.token), Client(args.url, args.other_token)
    bulk_id = send_bulk(bulk, args.bulk, args.chunk)
    waits: dict[str, list[float]] = {"urgent, 1 image": [], "normal, 10 images": []}
    try:
        for attempt in range(args.tries):
            if bulk.job(bulk_id)["status"] != "running" and attempt:
                print(f"the bulk job is no longer running after {attempt} tries; use a larger --bulk")
                break
            urgent = other.create([(f"u{attempt}.png", png(10**6 + attempt))], "urgent")
            waits["urgent, 1 image"].append(other.wait(urgent, args.timeout))
            files = [(f"n{attempt}-{i}.png", png(2 * 10**6 + 10 * attempt + i)) for i in range(10)]
            normal = other.create(files, "normal")
            waits["normal, 10 images"].append(other.wait(normal, args.timeout))
    finally:
        bulk.http.delete(f"{bulk.base}/jobs/{bulk_id}", timeout=30)  # cancels it
    print(f"bulk job {bulk_id}: {args.bulk} images, priority bulk; waits from upload to predicted:")
    for name, values in waits.items():
        if values:
            print(f"  {name}: n={len(values)} p50 {percentile(values, 50):.2f} s, p95 {percentile(values, 95):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
