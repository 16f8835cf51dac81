"""Throughput for 1 and then 2 worker hosts, in one run, on the network-namespace rig of tests/test_many_hosts.py
(services, web and worker hosts as separate namespaces; needs root). Each worker host is pinned to one core with
`taskset` and runs one worker process with one decode and one inference thread.

    sudo .venv/bin/python -m benchmarks.hosts [--images 1000] [--lanes]

For each phase the job is uploaded while no worker runs, then the phase's workers start; the rate counts the
images predicted between the 10th and the 90th percentile of their `processed_at`, so neither the models' loading
nor the first and last batches count. The services and web hosts are not pinned: on a machine with as many cores
as worker hosts they take their CPU from the workers (PostgreSQL, Redis and the S3 server work for every image).
With --lanes it also runs benchmarks/lanes.py against the rig's web host (two users) with both workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.host_services import Site, images, site, upload
from tests.services import Api

SHARED_DATA = Path(os.environ.get("RADBATCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PINNED = {"RADBATCH_DECODE_THREADS": "1", "RADBATCH_INFERENCE_THREADS": "1"}
CORES = {"w1": "0", "w2": "1"}


def steady_rate(running: Site, job_id: int) -> float:
    """Images per second between the 10th and 90th percentile of the job's images' processed_at."""
    engine = create_engine(running.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT extract(epoch FROM processed_at) FROM images WHERE job_id = :j ORDER BY 1"), {"j": job_id}
            ).all()
    finally:
        engine.dispose()
    times = [float(row[0]) for row in rows]
    low, high = int(len(times) * 0.1), int(len(times) * 0.9)
    return (high - low) / (times[high] - times[low])


def phase(running: Site, api: Api, workers: tuple[str, ...], count: int, offset: int) -> tuple[float, float]:
    """(steady img/s, wall img/s from the workers' start) with `workers` on a job of `count` queued images."""
    for name in CORES:
        running.rig[name].kill_all()
    job_id = upload(api, images(count, SHARED_DATA, offset=offset), f"{len(workers)} worker hosts")
    started = time.monotonic()
    for name in workers:
        running.start_worker(name, CORES[name], **PINNED)
    job = api.wait_finished(job_id, timeout=3600)
    wall = time.monotonic() - started
    assert (job["done"], job["failed"]) == (count, 0), job
    return steady_rate(running, job_id), count / wall


def lanes(running: Site, api: Api, bulk: int, tries: int) -> None:
    from benchmarks import lanes as lanes_benchmark

    web = running.rig["web"]
    env = running.web_env()
    web.run([sys.executable, "-m", "db.setup", "create-user", "other", "--password", "other user password"], env)
    other = web.run([sys.executable, "-m", "db.setup", "create-token", "other"], env).strip().splitlines()[-1]
    argv = ["--url", running.web_url, "--token", running.admin_token, "--other-token", other]
    lanes_benchmark.main([*argv, "--bulk", str(bulk), "--tries", str(tries)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="per phase")
    parser.add_argument("--lanes", action="store_true", help="also run benchmarks/lanes.py on the rig")
    parser.add_argument("--bulk", type=int, default=5000, help="--lanes: the bulk job's images")
    parser.add_argument("--tries", type=int, default=20, help="--lanes: tries")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}, load before: {os.getloadavg()}")
    with site(workers=()) as (running, api):
        one = phase(running, api, ("w1",), args.images, offset=0)
        two = phase(running, api, ("w1", "w2"), args.images, offset=args.images)
        print(f"load after: {os.getloadavg()}")
        print("| worker hosts (1 core each) | images | steady img/s | img/s from start |")
        print("|---|---|---|---|")
        for hosts, (steady, wall) in ((1, one), (2, two)):
            print(f"| {hosts} | {args.images} | {steady:.1f} | {wall:.1f} |")
        print(f"ratio 2/1: steady {two[0] / one[0]:.2f}x, from start {two[1] / one[1]:.2f}x (goal >= 1.7x)")
        if args.lanes:
            for name in CORES:
                running.rig[name].kill_all()
                running.start_worker(name)
            lanes(running, api, args.bulk, args.tries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
