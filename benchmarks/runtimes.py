"""Milliseconds per image of each model on each inference runtime, on the same batch, in one process.

    .venv/bin/python -m benchmarks.runtimes                     # all four models, batch 32
    .venv/bin/python -m benchmarks.runtimes --models cnn,unet --batch-size 64 --rounds 9 --json

The runtimes take turns round by round, so a neighbour's load slows them alike; the table gives the median
round and each runtime's speed-up over eager Keras. The ONNX files come from $RADBATCH_HOME/cache/onnx
(exported there first if missing). Model inference only: no decoding (benchmarks.throughput has that).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from models.registry import MODEL_NAMES, load_model
from models.runtime import RUNTIMES
from settings import Settings


def time_runtimes(name: str, runtimes: list[str], batch_size: int, rounds: int, settings: Settings) -> dict:
    """Median wall and CPU ms per image of model `name` on each runtime, timed in interleaved rounds."""
    loaded = {
        runtime: load_model(
            name, runtime=runtime, cache_dir=settings.onnx_cache_dir, threads=settings.inference_threads
        )
        for runtime in runtimes
    }
    first = next(iter(loaded.values()))
    batch = np.random.default_rng(0).random((batch_size, first.input_size, first.input_size, first.channels))
    batch = batch.astype(np.float32)
    for model in loaded.values():  # warm up: traces, XLA compilation, ONNX Runtime's memory arena
        model.predict(batch)
        model.predict(batch)
    wall: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    cpu: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    for _ in range(rounds):
        for runtime, model in loaded.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            model.predict(batch)
            wall[runtime].append(time.perf_counter() - started)
            cpu[runtime].append(time.process_time() - started_cpu)
    return {
        runtime: {
            "wall_ms": 1000 * float(np.median(wall[runtime])) / batch_size,
            "cpu_ms": 1000 * float(np.median(cpu[runtime])) / batch_size,
        }
        for runtime in runtimes
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    runtimes = args.runtimes.split(",")
    results = {
        name: time_runtimes(name, runtimes, args.batch_size, args.rounds, settings) for name in args.models.split(",")
    }
    if args.json:
        print(json.dumps({"batch_size": args.batch_size, "ms_per_image": results}, indent=2))
        return
    print(
        f"\nms per image, batch {args.batch_size}, median of {args.rounds} interleaved rounds (x: speed-up over keras)"
    )
    for clock in ("wall", "cpu"):
        print(f"\n{clock + ' clock':12s} " + " ".join(f"{runtime:>17s}" for runtime in runtimes))
        for name, times in results.items():
            keras_ms = times.get("keras", times[runtimes[0]])[f"{clock}_ms"]
            cells = [f"{times[r][clock + '_ms']:7.2f} ({keras_ms / times[r][clock + '_ms']:4.2f}x)" for r in runtimes]
            print(f"{name:12s} " + " ".join(f"{cell:>17s}" for cell in cells))
    print("\ncpu clock: CPU seconds of all this process's threads (spinning included), less sensitive to neighbours")


if __name__ == "__main__":
    main()
