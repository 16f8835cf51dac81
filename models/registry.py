"""Load a catalogue model (models/catalogue.py) by name, with its version, decision threshold, calibration and card.

Each built-in model lives in `models/weights/<name>/`:
  card.json   metadata: version, architecture, input size/channels, threshold, calibration, metrics
  card.md     the human-readable model card
  weights.npz the Keras weights, stored as float16 to keep the file small

The ensemble (`models/weights/ensemble.json`: version and members) averages the members' logits, each
relative to its own threshold (models.ensemble); its threshold follows from theirs. A model a site installed
(`python -m models.install`) is an ONNX file with its card, run on ONNX Runtime whatever RADBATCH_RUNTIME says.

Only `load_model` imports TensorFlow (or, for the ONNX runtime with its file already built, only ONNX
Runtime); reading cards does not. How a loaded model runs is `models.runtime`'s business (RADBATCH_RUNTIME).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models import gradcam
from models.calibration import PlattScaling
from models.catalogue import BUILTIN_LIST, ModelEntry
from models.ensemble import Ensemble
from models.prevalence import card_prevalence
from models.runtime import Runner, make_runner, onnx_runner

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_BUILTIN = {m["name"]: m for m in json.loads(BUILTIN_LIST.read_text())["models"]}
MODEL_NAMES = tuple(name for name, m in _BUILTIN.items() if m["runtime"] == "keras-weights")  # trainable here
_ENSEMBLE_FILE = WEIGHTS_DIR / "ensemble.json"
# the built-in ensemble's members (training and its tests); the worker takes them from the catalogue entry
ENSEMBLE_MEMBERS = tuple(json.loads(_ENSEMBLE_FILE.read_text())["members"]) if _ENSEMBLE_FILE.is_file() else ()
DISEASE_OUTPUT = gradcam.DISEASE_OUTPUT  # in a model with several outputs, the one holding the disease probability
FEATURES_OUTPUT = "pooled_features"  # the input of the final Dense layer, read by the per-finding heads
__all__ = ["Ensemble", "LoadedModel", "load_entry", "load_model", "read_card"]


class ModelNotTrainedError(FileNotFoundError):
    pass


def builder(name: str) -> Callable[..., Any]:
    from models import architectures

    if name not in MODEL_NAMES:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    return getattr(architectures, f"build_{name.replace('-', '_')}")


def input_spec(name: str) -> tuple[int, int]:
    """(size, channels) of a built-in model's input, from its catalogue entry."""
    size = _BUILTIN[name]["input"]
    return int(size["size"]), int(size["channels"])


def read_card(name: str, weights_dir: Path = WEIGHTS_DIR) -> dict:
    path = weights_dir / name / "card.json"
    if not path.exists():
        raise ModelNotTrainedError(f"model {name!r} has no trained weights at {path.parent}")
    return json.loads(path.read_text())


def read_ensemble(weights_dir: Path = WEIGHTS_DIR) -> dict:
    path = weights_dir / "ensemble.json"
    if not path.exists():
        raise ModelNotTrainedError(f"no ensemble settings at {path}")
    return json.loads(path.read_text())


def heatmap_head(name: str) -> tuple[str, ...]:
    """A built-in model's dense head activations (catalogue `heatmap_head`); () without heat maps."""
    return tuple(_BUILTIN.get(name, {}).get("heatmap_head", ()))


def save_weights(model, path: Path) -> None:
    np.savez_compressed(path, *[w.astype(np.float16) if w.dtype == np.float32 else w for w in model.get_weights()])


def load_weights(model, path: Path) -> None:
    with np.load(path) as archive:
        stored = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    model.set_weights([w.astype(np.float32) if w.dtype == np.float16 else w for w in stored])


@dataclass
class LoadedModel:
    name: str
    version: str
    threshold: float
    calibration: PlattScaling
    input_size: int
    channels: int
    card: dict
    runner: Runner
    output_kind: str = "probability"  # what the disease output holds: probability | logit (catalogue `output`)
    output_name: str = ""  # that output's name; "": DISEASE_OUTPUT if the model has it, else its first output
    keras_model: Any = None  # None when the ONNX runtime loaded a cached file without building the Keras model
    head: gradcam.DenseHead | None = None  # the dense head after the pooled features, for Grad-CAM

    @property
    def runtime(self) -> str:
        return self.runner.runtime

    @property
    def has_heatmaps(self) -> bool:
        return self.head is not None

    def predict_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the model by name (uncalibrated), for a batch shaped (n, size, size, channels)."""
        return self.runner(batch)

    def raw_probabilities(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """Uncalibrated disease probabilities from `predict_all`'s outputs: the card's output, else the one named
        DISEASE_OUTPUT if the model has one, else its first output (a logit output goes through the sigmoid)."""
        names = self.runner.output_names
        name = self.output_name or (DISEASE_OUTPUT if DISEASE_OUTPUT in names else names[0])
        values = outputs[name].reshape(-1)
        return 1.0 / (1.0 + np.exp(-values)) if self.output_kind == "logit" else values

    def predict_raw(self, batch: np.ndarray) -> np.ndarray:
        """Uncalibrated disease probabilities for a batch shaped (n, size, size, channels)."""
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.raw_probabilities(self.runner(batch))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of disease."""
        return self.calibration(self.predict_raw(batch))

    @property
    def has_pooled_features(self) -> bool:
        return FEATURES_OUTPUT in self.runner.output_names

    def predict_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities of disease and the pooled features (None if the served model lacks that
        output), from one forward pass."""
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32), None
        return self.disease_and_features(self.runner(batch))

    def disease_and_features(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities of disease and the pooled features (or None) from `predict_all`'s outputs."""
        return self.calibration(self.raw_probabilities(outputs)), outputs.get(FEATURES_OUTPUT)

    def heatmaps(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """Grad-CAM of the disease logit from `predict_all`'s outputs: (n, size, size) on the padded input square
        (models/gradcam.py)."""
        if self.head is None:
            raise gradcam.HeatmapError(f"model {self.name!r} has no heat maps")
        return gradcam.heatmaps(outputs, self.head, self.input_size)

    def label(self, probability: float) -> str:
        return "disease" if probability >= self.threshold else "healthy"

    @property
    def trained_prevalence(self) -> float:
        """The disease rate its calibrated probabilities reflect (models.prevalence)."""
        return card_prevalence(self.card)


def trained_keras(name: str, weights_dir: Path = WEIGHTS_DIR):
    """The Keras model `name` as trained, with its weights: one output, the disease probability."""
    size, channels = input_spec(name)
    keras_model = builder(name)(input_shape=(size, size, channels))
    load_weights(keras_model, weights_dir / name / "weights.npz")
    return keras_model


def keras_with_weights(name: str, weights_dir: Path = WEIGHTS_DIR):
    """The Keras model `name` with its trained weights, in its served form: outputs `disease`, `pooled_features`
    and, for a model with heat maps, the feature maps Grad-CAM needs, `features_<i>` (imports TensorFlow)."""
    from models.architectures import with_pooled_features

    keras_model = trained_keras(name, weights_dir)
    return with_pooled_features(keras_model, gradcam.feature_map_outputs(bool(heatmap_head(name)), keras_model))


def load_model(
    name: str,
    weights_dir: Path = WEIGHTS_DIR,
    runtime: str = "keras",
    cache_dir: Path | None = None,
    threads: int = 0,
) -> LoadedModel:
    """A trained model ready to predict on `runtime` (see models.runtime); "onnx" needs `cache_dir`."""
    card = read_card(name, weights_dir)
    size, channels = input_spec(name)
    runner, keras_model = make_runner(
        runtime, lambda: keras_with_weights(name, weights_dir), weights_dir / name / "weights.npz", cache_dir, threads
    )
    activations = heatmap_head(name)
    head = gradcam.read_head(activations, weights_dir / name / "weights.npz") if activations else None
    return LoadedModel(
        name=name,
        version=card["version"],
        threshold=float(card["threshold"]),
        calibration=PlattScaling.from_dict(card.get("calibration")),
        input_size=size,
        channels=channels,
        card=card,
        runner=runner,
        keras_model=keras_model,
        head=head,
    )


def load_entry(
    entry: ModelEntry, runtime: str = "onnx", cache_dir: Path | None = None, threads: int = 0
) -> LoadedModel:
    """A catalogue entry ready to predict: a built-in model on `runtime`, an installed ONNX model on ONNX Runtime."""
    if entry.runtime == "keras-weights":
        return load_model(entry.name, entry.folder, runtime, cache_dir, threads)
    if entry.runtime != "onnx":
        raise ValueError(f"model {entry.name!r}: runtime {entry.runtime!r} cannot be loaded as a single model")
    return LoadedModel(
        name=entry.name,
        version=entry.version,
        threshold=entry.threshold,
        calibration=PlattScaling.from_dict(entry.calibration),
        input_size=entry.input_size,
        channels=entry.channels,
        card=entry.card,
        runner=onnx_runner(entry.path, threads),
        output_kind=entry.output,
        output_name=entry.output_name,
    )
