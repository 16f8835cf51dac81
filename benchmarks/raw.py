"""The raw path: the served models on the same files in this process, with nothing else (no HTTP, no Redis, no
database, no thumbnails). Read, decode and preprocess run in a thread pool sized like the worker's
(RADBATCH_DECODE_THREADS), each input made once per distinct (size, channels) as the worker does; then
every model predicts the batch. `heatmap_cost` times the same batches with and without the worker's heat maps."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from dicomio.read import looks_like_dicom
from formats import read_upload
from models.preprocess import preprocess
from models.registry import LoadedModel
from worker.heatmaps import render
from worker.reading import write_thumbnail as write_png

Decoder = Callable[[bytes], Image.Image]


def choose_decoder(sample: Path, target_size: int) -> tuple[Decoder, str]:
    """The worker's own decoder (`formats.read_upload`): DICOM by content through `decode_dicom`,
    reduced towards `target_size` (the largest model input) as the worker does, other formats by Pillow."""
    read_upload(sample.read_bytes(), target_size)  # a file the worker cannot read fails here, before timing
    decoder = "dicomio.read.decode_dicom" if looks_like_dicom(sample.read_bytes()) else "models.preprocess.decode_image"
    return functools.partial(_decoded_picture, target_size=target_size), decoder


def _decoded_picture(data: bytes, target_size: int) -> Image.Image:
    return read_upload(data, target_size).image


def _specs(models: dict[str, LoadedModel]) -> set[tuple[int, int]]:
    return {(m.input_size, m.channels) for m in models.values()}


def prepare(path: Path, specs: set[tuple[int, int]], decode: Decoder) -> dict[tuple[int, int], np.ndarray]:
    picture = decode(path.read_bytes())
    return {(size, channels): preprocess(picture, size=size, channels=channels) for size, channels in specs}


def run(
    paths: list[Path], models: dict[str, LoadedModel], batch_size: int, pool: ThreadPoolExecutor, decode: Decoder
) -> dict:
    """Wall seconds for all `paths`, and each model's share of it."""
    specs = _specs(models)
    for model in models.values():  # warm up outside the clock
        model.predict(np.zeros((batch_size, model.input_size, model.input_size, model.channels), np.float32))
    inference = {name: 0.0 for name in models}
    preparing = 0.0
    started = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        before = time.perf_counter()
        inputs = list(pool.map(lambda p: prepare(p, specs, decode), paths[start : start + batch_size]))
        preparing += time.perf_counter() - before
        for name, model in models.items():
            before = time.perf_counter()
            model.predict(np.stack([x[(model.input_size, model.channels)] for x in inputs]))
            inference[name] += time.perf_counter() - before
    return {"total_s": time.perf_counter() - started, "prepare_s": preparing, "inference_s": inference}


def single_image_times(paths: list[Path], models: dict[str, LoadedModel], decode: Decoder) -> list[float]:
    """Seconds for one image at a time: read, decode, preprocess, every model."""
    specs = _specs(models)
    times = []
    for path in paths:
        started = time.perf_counter()
        inputs = prepare(path, specs, decode)
        for model in models.values():
            model.predict(inputs[(model.input_size, model.channels)][None])
        times.append(time.perf_counter() - started)
    return times


def heatmap_cost(
    paths: list[Path],
    models: dict[str, LoadedModel],
    batch_size: int,
    pool: ThreadPoolExecutor,
    decode: Decoder,
    folder: Path,
) -> dict:
    """Each batch prepared once, then predicted both without heat maps and with them (Grad-CAM drawn and written
    as PNGs into `folder` in the pool, as the worker does), in alternating order so both meet the same load.
    Seconds: prepare_s, plain_s (inference in the plain pass), with_s (inference in the heat-map pass: the same
    session, whose outputs are now kept), heatmaps_s (Grad-CAM, colouring, PNG encoding and writing)."""
    specs = _specs(models)
    for model in models.values():
        model.predict_all(np.zeros((batch_size, model.input_size, model.input_size, model.channels), np.float32))
    times = {"prepare_s": 0.0, "plain_s": 0.0, "with_s": 0.0, "heatmaps_s": 0.0}
    folder.mkdir(parents=True, exist_ok=True)

    def plain(inputs: list[dict]) -> None:
        for model in models.values():
            model.predict(np.stack([x[(model.input_size, model.channels)] for x in inputs]))

    def with_heatmaps(inputs: list[dict], sizes: list[tuple[int, int]], first: int) -> None:
        drawn = []
        for name, model in models.items():
            before = time.perf_counter()
            outputs = model.predict_all(np.stack([x[(model.input_size, model.channels)] for x in inputs]))
            model.raw_probabilities(outputs)
            middle = time.perf_counter()
            if model.has_heatmaps:
                for i, (square, size) in enumerate(zip(model.heatmaps(outputs), sizes)):
                    drawn.append((square, size, folder / f"{first + i}-{name}.png"))
            times["with_s"] += middle - before
            times["heatmaps_s"] += time.perf_counter() - middle
        before = time.perf_counter()
        list(pool.map(lambda job: write_png(render(job[0], *job[1]), job[2]), drawn))
        times["heatmaps_s"] += time.perf_counter() - before

    for number, start in enumerate(range(0, len(paths), batch_size)):
        before = time.perf_counter()
        pictures = list(pool.map(lambda p: decode(p.read_bytes()), paths[start : start + batch_size]))
        inputs = list(pool.map(lambda pic: {(s, c): preprocess(pic, size=s, channels=c) for s, c in specs}, pictures))
        sizes = [picture.size for picture in pictures]
        times["prepare_s"] += time.perf_counter() - before
        for run_plain in (number % 2 == 0, number % 2 == 1):
            before = time.perf_counter()
            if run_plain:
                plain(inputs)
                times["plain_s"] += time.perf_counter() - before
            else:
                with_heatmaps(inputs, sizes, start)
    return times
