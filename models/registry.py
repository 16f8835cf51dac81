"""Load a trained model by name, with its version, decision threshold, calibration and card.

Each model lives in `models/weights/<name>/`:
  card.json   metadata: version, architecture, input size/channels, threshold, calibration, metrics
  card.md     the human-readable model card
  weights.npz the Keras weights, stored as float16 to keep the file small

The ensemble (`models/weights/ensemble.json`: version and members) averages the members' logits, each
relative to its own threshold (see `Ensemble`); its threshold follows from theirs.

Only `load_model` imports TensorFlow (or, for the ONNX runtime with its file already built, only ONNX
Runtime); reading cards does not. How a loaded model runs is `models.runtime`'s business (RADBATCH_RUNTIME).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models import gradcam
from models.calibration import PlattScaling, logit
from models.prevalence import card_prevalence, mean_logit_rate
from models.runtime import Runner, make_runner

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_NAMES = ("cnn", "unet", "seed-cnn", "seed-unet")
ENSEMBLE_MEMBERS = ("cnn", "unet")
DISEASE_OUTPUT = gradcam.DISEASE_OUTPUT  # in a model with several outputs, the one holding the disease probability
FEATURES_OUTPUT = "pooled_features"  # the input of the final Dense layer, read by the per-finding heads


class ModelNotTrainedError(FileNotFoundError):
    pass


def builder(name: str) -> Callable[..., Any]:
    from models import architectures

    builders = {
        "cnn": architectures.build_cnn,
        "unet": architectures.build_unet,
        "seed-cnn": architectures.build_seed_cnn,
        "seed-unet": architectures.build_seed_unet,
    }
    if name not in builders:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    return builders[name]


def input_spec(name: str) -> tuple[int, int]:
    """(size, channels) of a model's input."""
    return (128, 3) if name.startswith("seed-") else (128, 1)


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
        """Uncalibrated disease probabilities from `predict_all`'s outputs: the output named DISEASE_OUTPUT if
        the model has one, else its first output."""
        names = self.runner.output_names
        return outputs[DISEASE_OUTPUT if DISEASE_OUTPUT in names else names[0]].reshape(-1)

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
    return with_pooled_features(keras_model, gradcam.feature_map_outputs(name, keras_model))


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
    head = gradcam.read_head(name, weights_dir / name / "weights.npz") if name in gradcam.HEADS else None
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


@dataclass(frozen=True)
class Ensemble:
    """The members' logits, each relative to its own threshold, averaged.

    probability = sigmoid(mean of the members' logit(p)), threshold = sigmoid(mean of their logit(threshold)),
    so the ensemble says disease exactly when mean(logit p_m − logit t_m) ≥ 0: when every member is on the
    same side of its own threshold, the ensemble is too; it only decides between members that disagree.
    The threshold is derived from the members' (read from their cards), never tuned on its own.
    """

    version: str
    member_thresholds: Mapping[str, float]
    members: tuple[str, ...] = ENSEMBLE_MEMBERS
    member_prevalences: Mapping[str, float] | None = None  # each member's trained prevalence (models.prevalence)

    @classmethod
    def load(cls, weights_dir: Path = WEIGHTS_DIR) -> Ensemble:
        data = read_ensemble(weights_dir)
        members = tuple(data["members"])
        cards = {m: read_card(m, weights_dir) for m in members}
        return cls(
            version=data["version"],
            member_thresholds={m: float(cards[m]["threshold"]) for m in members},
            members=members,
            member_prevalences={m: card_prevalence(cards[m]) for m in members},
        )

    @property
    def threshold(self) -> float:
        return mean_logit_rate(self.member_thresholds[m] for m in self.members)

    @property
    def trained_prevalence(self) -> float:
        """The prevalence its probabilities reflect: the members' by the same rule as the threshold."""
        return mean_logit_rate((self.member_prevalences or {})[m] for m in self.members)

    def combine(self, member_probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
        z = np.mean([logit(member_probabilities[m]) for m in self.members], axis=0)
        return 1.0 / (1.0 + np.exp(-z))

    def margin(self, member_probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
        """mean(logit p_m − logit t_m): ≥ 0 is disease."""
        return np.mean(
            [logit(member_probabilities[m]) - logit(self.member_thresholds[m]) for m in self.members], axis=0
        )

    def labels(self, member_probabilities: Mapping[str, np.ndarray]) -> list[str]:
        """The ensemble's labels: the members' own when they all agree (what the margin gives, stated so that
        no rounding at a threshold can flip it), else the sign of the margin."""
        votes = np.array([np.atleast_1d(member_probabilities[m]) >= self.member_thresholds[m] for m in self.members])
        disease = np.where(
            votes.all(axis=0) | ~votes.any(axis=0), votes[0], np.atleast_1d(self.margin(member_probabilities)) >= 0
        )
        return ["disease" if d else "healthy" for d in disease]

    def label(self, probability: float) -> str:
        return "disease" if probability >= self.threshold else "healthy"
