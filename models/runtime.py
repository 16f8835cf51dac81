"""How a trained Keras model is run: eagerly, traced with tf.function, compiled by XLA, or on ONNX Runtime.

Every runtime returns the same thing, a `Runner`: a callable from a batch shaped (n, size, size, channels)
to a dict of ALL the model's outputs by name, in the model's output order, as float32 NumPy arrays.

  keras        the Keras model called eagerly: the reference every other runtime is tested against
  tf-function  the same graph traced once by tf.function (one trace for any batch size)
  xla          tf.function(jit_compile=True): XLA compiles one program per batch shape it sees
  onnx         ONNX Runtime on an ONNX file exported from the Keras model (tf2onnx through Keras's own
               `model.export(format="onnx")`), built once into a cache keyed by the weights' SHA-256

ONNX Runtime runs on CUDA when the onnxruntime-gpu wheel and a GPU are there, TensorFlow's runtimes on
whatever device TensorFlow sees: the same code path on a GPU node. Importing this module imports neither
TensorFlow nor ONNX Runtime; each runtime imports what it needs when it is built. Building a Runner runs
TensorFlow, so it must happen in a worker's child process, never in the Celery parent before it forks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import onnx_export

log = logging.getLogger(__name__)

RUNTIMES = ("keras", "tf-function", "xla", "onnx")


class RuntimeChoiceError(ValueError):
    pass


@dataclass
class Runner:
    """A batch in, every output by name out."""

    runtime: str
    output_names: tuple[str, ...]
    run: Callable[[np.ndarray], dict[str, np.ndarray]]
    device: str = "cpu"
    session: Any = None  # the ONNX Runtime session, on that runtime (its inputs' and outputs' shapes)

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.run(np.ascontiguousarray(batch, dtype=np.float32))


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise RuntimeChoiceError(f"unknown runtime {runtime!r} (RADBATCH_RUNTIME); choose from {', '.join(RUNTIMES)}")
    return runtime


def output_names(outputs: Any) -> tuple[str, ...]:
    """Names of a model's outputs in flattened order: a dict's keys, else output_0, output_1, ...

    Keras numbers unnamed layers by what the process built before (dense, dense_1, ...), so layer names would
    make the same model's outputs, and its exported file, differ from one process to the next.
    """
    import keras

    if isinstance(outputs, dict):
        return tuple(keras.tree.flatten({key: key for key in outputs}))
    return tuple(f"output_{i}" for i in range(len(keras.tree.flatten(outputs))))


def _as_dict(names: tuple[str, ...], outputs: Any) -> dict[str, np.ndarray]:
    import keras

    flat = keras.tree.flatten(outputs)
    return {name: np.asarray(value, dtype=np.float32) for name, value in zip(names, flat)}


def probe(keras_model: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """Call the model once (Keras exports only models that have been called) and learn its output names."""
    shape = tuple(keras_model.inputs[0].shape[1:])
    batch = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    return batch, output_names(keras_model(batch, training=False))


def _tensorflow_runner(keras_model: Any, names: tuple[str, ...], runtime: str) -> Runner:
    import tensorflow as tf

    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if runtime == "keras":
        return Runner(runtime, names, lambda batch: _as_dict(names, keras_model(batch, training=False)), device)
    spec = tf.TensorSpec((None, *keras_model.inputs[0].shape[1:]), tf.float32)
    traced = tf.function(
        lambda batch: keras_model(batch, training=False), input_signature=[spec], jit_compile=runtime == "xla"
    )
    return Runner(runtime, names, lambda batch: _as_dict(names, traced(batch)), device)


def onnx_session(path: Path, threads: int = 0) -> Any:
    """An ONNX Runtime session on CUDA when it is available, else on the CPU; `threads` 0 means one per core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    # Idle ONNX threads would otherwise spin for a while after each call, taking cores from the decoding threads.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), options, providers=providers)


def onnx_runner(path: Path, threads: int) -> Runner:
    session = onnx_session(path, threads)
    input_name = session.get_inputs()[0].name
    names = tuple(output.name for output in session.get_outputs())
    device = "gpu" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(None, {input_name: batch})))

    return Runner("onnx", names, run, device, session)


def make_runner(
    runtime: str,
    build_keras: Callable[[], Any],
    weights_path: Path,
    cache_dir: Path | None = None,
    threads: int = 0,
) -> tuple[Runner, Any]:
    """A Runner for `runtime` and the Keras model it came from (None when a cached ONNX file made building it
    unnecessary). `build_keras()` builds the model with its trained weights; the ONNX file is looked up in
    `cache_dir` (required for "onnx") and exported there first if missing."""
    check_runtime(runtime)
    if runtime == "onnx":
        if cache_dir is None:
            raise RuntimeChoiceError("the onnx runtime needs a cache folder for its exported files")
        path, keras_model = onnx_export.cached_export(build_keras, weights_path, cache_dir, probe, onnx_session)
        return onnx_runner(path, threads), keras_model
    keras_model = build_keras()
    _, names = probe(keras_model)
    return _tensorflow_runner(keras_model, names, runtime), keras_model
