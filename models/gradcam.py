"""Grad-CAM heat maps for the improved CNN and U-Net, exact and in NumPy: no TensorFlow in the serving path.

Both models end in global average pooling (GAP) and a small dense head: the CNN `GAP -> Dense(1)`, the U-Net
`concat(GAP of 4 levels) -> Dense(64, relu) -> Dense(1)`. Write `p` for the pooled vector and `z` for the
disease logit (before the sigmoid). GAP is linear, so for a feature map A of level l (h x w positions)

    dz / dA_k(x, y) = (1 / hw) * dz / dp_k     at every position (x, y),

and for a Dense-ReLU-Dense head `dz/dp = W1 @ (relu'(W1.T p + b1) * w2)` (for one Dense layer, `dz/dp = w`).
So the gradient Grad-CAM needs is a function of the head's weights and `p = mean(A)` alone, and computing it
here gives what TensorFlow's GradientTape gives (tests/test_heatmaps.py checks it), on any runtime: the served
model only has to return the feature maps that feed each GAP (`feature_map_outputs` names them as outputs).

Per level, Grad-CAM is `ReLU(sum_k alpha_k A_k)` with `alpha_k = sum_(x,y) dz/dA_k(x, y) = dz/dp_k`: the paper
averages over positions instead, a constant per map that matters only when maps of several resolutions are
added, and the sum makes each level's map, once upsampled to the input, count as much as that level counts in
the logit. The levels are upsampled (bilinear) to the model's padded input square and added.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FEATURE_PREFIX = "features_"  # output names of the maps that feed each GAP: features_0, features_1, ...
DISEASE_OUTPUT = "disease"

# A model's dense head after the pooled features is catalogue data (`heatmap_head` in models/weights/catalogue.json):
# the activations of its Dense layers, in order, with the final sigmoid counted as linear (Grad-CAM takes the
# logit). These layers' kernels and biases are the last arrays of the model's weights file (Keras stores weights in
# layer order and the head comes last).


class HeatmapError(ValueError):
    pass


@dataclass(frozen=True)
class DenseHead:
    kernels: tuple[np.ndarray, ...]  # (inputs, outputs) each
    biases: tuple[np.ndarray, ...]
    activations: tuple[str, ...]

    @property
    def inputs(self) -> int:
        return self.kernels[0].shape[0]

    def logit_gradient(self, pooled: np.ndarray) -> np.ndarray:
        """dz/dp for a batch of pooled vectors (n, inputs): the exact gradient of the logit."""
        pooled = pooled.astype(np.float64)
        gates = []  # relu'(pre-activation) of each hidden layer, per image
        x = pooled
        for kernel, bias, activation in zip(self.kernels, self.biases, self.activations):
            pre = x @ kernel + bias
            if activation == "relu":
                gates.append((pre > 0).astype(np.float64))  # TensorFlow's ReLU gradient is 0 at 0
                x = np.maximum(pre, 0.0)
            else:
                gates.append(np.ones_like(pre))
                x = pre
        gradient = np.ones((len(pooled), 1))  # dz/dz, backwards through the layers
        for kernel, gate in zip(reversed(self.kernels), reversed(gates)):
            gradient = (gradient * gate) @ kernel.T
        return gradient


def read_head(activations: tuple[str, ...], weights_path: Path) -> DenseHead:
    """A model's dense head with these activations (its catalogue `heatmap_head`) from its weights file, in
    float64."""
    with np.load(weights_path) as archive:
        count = len(archive.files)
        tail = [archive[f"arr_{i}"].astype(np.float64) for i in range(count - 2 * len(activations), count)]
    kernels, biases = tuple(tail[0::2]), tuple(tail[1::2])
    for i, (kernel, bias) in enumerate(zip(kernels, biases)):
        following = kernels[i + 1].shape[0] if i + 1 < len(kernels) else 1
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],) or kernel.shape[1] != following:
            raise HeatmapError(f"{weights_path} does not end in a dense head of {len(activations)} layers")
    return DenseHead(kernels, biases, activations)


def feature_names(outputs: dict[str, np.ndarray]) -> list[str]:
    return sorted((k for k in outputs if k.startswith(FEATURE_PREFIX)), key=lambda k: int(k[len(FEATURE_PREFIX) :]))


def level_maps(features: list[np.ndarray], head: DenseHead) -> list[np.ndarray]:
    """Grad-CAM of each level, (n, h, w) per level, from the feature maps (n, h, w, k) that feed the GAPs."""
    channels = [f.shape[-1] for f in features]
    if sum(channels) != head.inputs:
        raise HeatmapError(f"the feature maps have {sum(channels)} channels, the head takes {head.inputs}")
    pooled = np.concatenate([f.mean(axis=(1, 2), dtype=np.float64) for f in features], axis=1)
    alphas = np.split(head.logit_gradient(pooled), np.cumsum(channels)[:-1], axis=1)
    return [np.maximum(np.einsum("nhwk,nk->nhw", f, a), 0.0) for f, a in zip(features, alphas)]


def upsample(level: np.ndarray, side: int) -> np.ndarray:
    """One (h, w) map resized to (side, side) by Pillow's bilinear filter, on float data."""
    if level.shape == (side, side):
        return level.astype(np.float32)
    return np.asarray(Image.fromarray(level.astype(np.float32)).resize((side, side), Image.Resampling.BILINEAR))


def combine(levels: list[np.ndarray], side: int) -> np.ndarray:
    """The levels of one image, each (h, w), upsampled to the padded input square and added: (side, side)."""
    return np.sum([upsample(level, side) for level in levels], axis=0)


def normalise(heat: np.ndarray) -> np.ndarray:
    """0..255 as uint8, the peak at 255 (all zero where the model found nothing pointing to disease)."""
    peak = float(heat.max(initial=0.0))
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros(heat.shape, dtype=np.uint8)
    return np.clip(np.rint(heat / peak * 255.0), 0, 255).astype(np.uint8)


def heatmaps(outputs: dict[str, np.ndarray], head: DenseHead, side: int) -> np.ndarray:
    """Grad-CAM of a batch from the model's outputs: (n, side, side) float32 on the padded input square."""
    levels = level_maps([outputs[name] for name in feature_names(outputs)], head)
    return np.stack([combine([level[i] for level in levels], side) for i in range(len(levels[0]))])


def feature_map_outputs(has_heatmaps: bool, keras_model: Any) -> dict[str, Any]:
    """For a model with heat maps, the feature map that feeds each GAP of its head, as "features_<i>" (in the order
    the head concatenates them): the extra outputs its served form has (models.architectures.with_pooled_features)."""
    if not has_heatmaps:
        return {}
    return {f"{FEATURE_PREFIX}{i}": tensor for i, tensor in enumerate(gap_inputs(keras_model.outputs[0]))}


def gap_inputs(tensor: Any) -> list[Any]:
    """The tensors that feed the GAPs a head reads, walking back from its output through Dense, Dropout and
    Concatenate layers."""
    from keras import layers

    layer = tensor._keras_history.operation
    if isinstance(layer, layers.GlobalAveragePooling2D):
        return [layer.input]
    if isinstance(layer, layers.Concatenate):
        return [found for part in layer.input for found in gap_inputs(part)]
    if isinstance(layer, (layers.Dense, layers.Dropout)):
        return gap_inputs(layer.input)
    raise HeatmapError(f"the head reaches a {type(layer).__name__} layer before any global average pooling")
