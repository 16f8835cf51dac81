"""ONNX files derived from the committed weights: exported reproducibly, never edited by hand.

A worker builds the files it needs on its first start (`models.runtime`); `python -m models.onnx_build` builds
them ahead (a container image, a deploy step). A file is named `<model>-<key>.onnx`, where the key is a SHA-256
over the weights file, the architecture source, the opset and the exporter's versions, so new weights or a new
exporter make a new file and an old one is never served by mistake. The export is deterministic (fixed opset, no
timestamps): the same inputs give the same bytes. Every output the Keras model has is exported under its Keras
name, and each file is checked against the Keras model on a probe batch before it is kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ONNX_OPSET = 17
EXPORT_TOLERANCE = 1e-4
# The sources that shape the exported graph: the architectures, and the outputs added for Grad-CAM.
GRAPH_SOURCES = tuple(Path(__file__).resolve().parent / name for name in ("architectures.py", "gradcam.py"))


class ExportError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_version(name: str) -> str:
    for distribution in (name, f"{name}-cpu"):  # TensorFlow is `tensorflow` on GPU images, `tensorflow-cpu` here
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def cache_key(weights_path: Path) -> str:
    """What the exported file depends on, hashed: the weights, the graph's sources, the opset and the exporters."""
    parts = [
        f"weights={sha256_of(weights_path)}",
        *(f"{source.name}={sha256_of(source)}" for source in GRAPH_SOURCES),
        f"opset={ONNX_OPSET}",
        *(f"{package}={_package_version(package)}" for package in ("tf2onnx", "onnx", "keras", "tensorflow")),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cache_path(weights_path: Path, cache_dir: Path) -> Path:
    return cache_dir / f"{weights_path.parent.name}-{cache_key(weights_path)[:16]}.onnx"


def _rename_outputs(proto: Any, names: tuple[str, ...]) -> None:
    """Give the graph's outputs (tf2onnx calls them Identity:0, Identity_1:0, ...) the Keras output names."""
    graph = proto.graph
    if len(graph.output) != len(names):
        raise ExportError(f"the ONNX graph has {len(graph.output)} outputs, the Keras model {len(names)}")
    renames = {output.name: name for output, name in zip(graph.output, names)}
    for node in graph.node:
        for i, value in enumerate(node.output):
            if value in renames:
                node.output[i] = renames[value]
    for output in graph.output:
        output.name = renames[output.name]


def _canonical_names(proto: Any) -> None:
    """Rename nodes, weights and intermediate values by position: Keras and tf2onnx number them by what the
    process built before, and the same model must give the same bytes whatever ran first."""
    graph = proto.graph
    keep = {value.name for value in graph.input} | {value.name for value in graph.output}
    weights = {init.name for init in graph.initializer}
    names: dict[str, str] = {}
    for i, node in enumerate(graph.node):  # weights by first use, values by the node that makes them
        node.name = f"{node.op_type.lower()}{i}"
        for value in node.input:
            if value in weights and value not in names:
                names[value] = f"w{len(names)}"
        for j, value in enumerate(node.output):
            if value and value not in keep:
                names.setdefault(value, f"v{i}_{j}")
    for init in graph.initializer:
        init.name = names.setdefault(init.name, f"w_unused{len(names)}")
    ordered = sorted(graph.initializer, key=lambda init: (len(init.name), init.name))
    graph.ClearField("initializer")
    graph.initializer.extend(ordered)
    for node in graph.node:
        node.input[:] = [names.get(value, value) for value in node.input]
        node.output[:] = [names.get(value, value) for value in node.output]
    for info in graph.value_info:
        info.name = names.get(info.name, info.name)
    symbols: dict[str, str] = {}  # tf2onnx's unk__<counter> for unknown sizes: "batch" and "dim<k>" instead
    for info in [*graph.input, *graph.output, *graph.value_info]:
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = symbols.setdefault(dim.dim_param, "batch" if not symbols else f"dim{len(symbols)}")
    graph.doc_string = ""


Probe = Callable[[Any], tuple[np.ndarray, tuple[str, ...]]]  # Keras model -> (a probe batch, its output names)
OpenSession = Callable[[Path], Any]  # an ONNX file -> an ONNX Runtime session (models.runtime.onnx_session)


def export(keras_model: Any, path: Path, probe: Probe, open_session: OpenSession) -> None:
    """Export `keras_model` to `path` (written atomically), checked against Keras output by output."""
    import onnx
    import tensorflow as tf

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # it narrates every rewrite at INFO
    batch, names = probe(keras_model)
    spec = tf.TensorSpec((None, *keras_model.inputs[0].shape[1:]), tf.float32, name="image")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():  # Keras's numpy-2 patch for tf2onnx touches np.object
            warnings.simplefilter("ignore", FutureWarning)
            keras_model.export(str(raw), format="onnx", input_signature=[spec], opset_version=ONNX_OPSET, verbose=False)
        proto = onnx.load(str(raw))
    _rename_outputs(proto, names)
    _canonical_names(proto)
    proto.doc_string = ""
    proto.producer_name, proto.producer_version = "radbatch models.onnx_export", f"opset {ONNX_OPSET}"
    onnx.checker.check_model(proto)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(proto.SerializeToString(deterministic=True))
        _check_against_keras(keras_model, open_session(Path(tmp_path)), batch, names)
        os.replace(tmp_path, path)
    except BaseException:
        Path(tmp_path).unlink(missing_ok=True)
        raise


def _check_against_keras(keras_model: Any, session: Any, batch: np.ndarray, names: tuple[str, ...]) -> None:
    import keras

    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: batch})))
    expected = dict(zip(names, keras.tree.flatten(keras_model(batch, training=False))))
    for name, value in expected.items():
        difference = float(np.max(np.abs(np.asarray(value) - got[name])))
        if difference > EXPORT_TOLERANCE:
            raise ExportError(f"ONNX output {name!r} differs from Keras by {difference:.2e} on the probe batch")


def cached_export(
    build_keras: Callable[[], Any], weights_path: Path, cache_dir: Path, probe: Probe, open_session: OpenSession
) -> tuple[Path, Any]:
    """The ONNX file for these weights, exported first if the cache lacks it; and the Keras model if one was built.

    Worker processes starting together take a file lock, so one exports and the others wait and reuse it.
    """
    path = cache_path(weights_path, cache_dir)
    if path.exists():
        return path, None
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{path.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return path, None
        log.info("exporting %s to ONNX (opset %d) at %s", weights_path.parent.name, ONNX_OPSET, path)
        keras_model = build_keras()
        export(keras_model, path, probe, open_session)
    return path, keras_model
