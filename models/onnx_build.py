"""Export the trained models to ONNX ahead of time (`models.onnx_export` does the export):

    python -m models.onnx_build                      # every trained model into $RADBATCH_HOME/cache/onnx
    python -m models.onnx_build --models cnn --cache /tmp/onnx

A worker builds the files it needs on its first start; this command builds them ahead (a container image, a
deploy step), under the same content-keyed names, and prints each file's SHA-256.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from models.onnx_export import cached_export, sha256_of
from models.registry import MODEL_NAMES, WEIGHTS_DIR, keras_with_weights
from models.runtime import onnx_session, probe
from settings import Settings


def build(name: str, cache_dir: Path) -> Path:
    """The ONNX file of the trained model `name` in `cache_dir`, exported if missing."""
    weights = WEIGHTS_DIR / name / "weights.npz"
    path, _ = cached_export(lambda: keras_with_weights(name), weights, cache_dir, probe, onnx_session)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.onnx_build", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated model names")
    parser.add_argument("--cache", type=Path, default=None, help="default: $RADBATCH_HOME/cache/onnx")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache_dir = args.cache or Settings.from_env().onnx_cache_dir
    for name in args.models.split(","):
        path = build(name, cache_dir)
        print(f"{name}: {path} (sha256 {sha256_of(path)})")


if __name__ == "__main__":
    main()
