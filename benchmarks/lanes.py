"""Fair lanes, measured. Against a running radbatch, two cases, each with a large job of one user running:

1. the large job in the bulk lane: the wait of a 1-image urgent job and of a 10-image normal job of another user;
2. the large job in the normal lane (the same lane): the wait of a 10-image normal job of another user, who takes
   turns with it batch by batch (user shard queues, docs/hosts.md "Lanes").

    RADBATCH_ADMIN_TOKEN=secret make run      # in one terminal; then two users with a token each
    .venv/bin/python -m benchmarks.lanes --url http://127.0.0.1:5000 --token BIG_TOKEN --other-token OTHER_TOKEN

The large job (--big images, 128-px PNGs made here) is sent by the first token; then, one try at a time, the other
token's jobs; a wait is from the start of the upload until the job is done, p50 and p95 over --tries. The goal
(issue 15): each waits at most one batch time plus 1 s. Each large job is cancelled when its case is measured.
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


def send_big(client: Client, images: int, chunk: int, lane: str) -> int:
    job_id = client.create([], lane, is_open=True)
    for start in range(0, images, chunk):
        client.add(job_id, [(f"{lane}/{i}.png", png(i)) for i in range(start, min(images, start + chunk))])
    client.http.post(f"{client.base}/jobs/{job_id}/close", timeout=30).raise_for_status()
    return job_id


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(big: Client, other: Client, lane: str, small: tuple[str, ...], args: argparse.Namespace) -> dict:
    """With a large `lane` job of `big` running, the waits of `other`'s small jobs (`small`: their lanes)."""
    big_id = send_big(big, args.big, args.chunk, lane)
    waits: dict[str, list[float]] = {name: [] for name in small}
    seed = {"bulk": 10**6, "normal": 2 * 10**6}[lane]
    try:
        for attempt in range(args.tries):
            if big.job(big_id)["status"] != "running" and attempt:
                print(f"the {lane} job is no longer running after {attempt} tries; use a larger --big")
                break
            for name in small:
                count = 1 if name == "urgent" else 10
                files = [
                    (f"{name}{attempt}-{i}.png", png(seed + 100 * attempt + 10 * len(name) + i)) for i in range(count)
                ]
                job_id = other.create(files, name)
                waits[name].append(other.wait(job_id, args.timeout))
    finally:
        left = big.job(big_id)
        big.http.delete(f"{big.base}/jobs/{big_id}", timeout=30)  # cancels it
    print(f"{lane} job {big_id}: {args.big} images, {left['done']} done when measured; another user's jobs waited:")
    for name, values in waits.items():
        if values:
            size = "1 image" if name == "urgent" else "10 images"
            p50, p95 = percentile(values, 50), percentile(values, 95)
            print(f"  {name}, {size}: n={len(values)} p50 {p50:.2f} s, p95 {p95:.2f} s")
    return waits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True, help="the large job's user")
    parser.add_argument("--other-token", required=True, help="another user, for the small jobs")
    parser.add_argument("--big", type=int, default=5000, help="images in the large job")
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--cases", default="bulk,normal", help="the large job's lanes, one case each")
    args = parser.parse_args(argv)
    big, other = Client(args.url, args.token), Client(args.url, args.other_token)
    small = {"bulk": ("urgent", "normal"), "normal": ("normal",)}
    for lane in args.cases.split(","):
        measure(big, other, lane, small[lane], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
