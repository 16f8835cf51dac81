"""Grad-CAM in NumPy (models/gradcam.py) against TensorFlow's GradientTape on the Keras models, and the pieces that
turn a map into the served PNG (worker/heatmaps.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from models import gradcam
from models.preprocess import load_and_preprocess
from models.registry import MODEL_NAMES, WEIGHTS_DIR, heatmap_head, keras_with_weights, trained_keras
from tests.conftest import PIPELINE_IMAGES, PIPELINE_ORIGINALS
from worker.heatmaps import picture, render

HEAT_MODELS = tuple(name for name in MODEL_NAMES if heatmap_head(name))  # the catalogue says which


def real_batch() -> np.ndarray:
    paths = sorted(PIPELINE_IMAGES.glob("*.png"))[:6] + sorted(PIPELINE_ORIGINALS.glob("*.png"))[:2]
    return np.stack([load_and_preprocess(p) for p in paths])


TOLERANCE = 1e-4  # of the map's peak: TensorFlow works in float32, models/gradcam.py in float64


def tape_maps(keras_model, batch: np.ndarray, through_whole_model: bool) -> list[np.ndarray]:
    """Grad-CAM per level with gradients from TensorFlow, alpha summed over positions as models/gradcam.py does.

    `through_whole_model`: the gradient of the logit with respect to each feature map through the whole graph
    (for a U-Net level that also feeds the decoder, that includes the decoder's paths); otherwise through the
    pooling and the dense head only, each map taken as an input of the head.
    """
    import keras
    import tensorflow as tf

    gap_inputs = gradcam.gap_inputs(keras_model.outputs[0])
    dense = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.Dense)]
    last = dense[-1]
    probe = keras.Model(keras_model.inputs[0], [*gap_inputs, last.input])
    images = tf.constant(batch)
    if through_whole_model:
        with tf.GradientTape() as tape:
            *features, before_last = probe(images, training=False)
            logit = tf.matmul(before_last, last.kernel) + last.bias
    else:  # the maps as constants: no path from one level to the next is recorded
        features = [tf.constant(f) for f in probe(images, training=False)[:-1]]
        with tf.GradientTape() as tape:
            tape.watch(features)
            x = tf.concat([tf.reduce_mean(f, axis=(1, 2)) for f in features], axis=1)
            for layer in dense[:-1]:
                x = layer(x)
            logit = tf.matmul(x, last.kernel) + last.bias
    gradients = tape.gradient(logit, features)
    return [
        tf.nn.relu(tf.einsum("nhwk,nk->nhw", f, tf.reduce_sum(g, axis=(1, 2)))).numpy()
        for f, g in zip(features, gradients)
    ]


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return real_batch()


@pytest.mark.parametrize("name", HEAT_MODELS)
def test_numpy_gradcam_equals_gradient_tape_gradcam(name: str, batch: np.ndarray) -> None:
    keras_model = trained_keras(name)
    outputs = {k: np.asarray(v) for k, v in keras_with_weights(name)(batch, training=False).items()}
    np.testing.assert_allclose(outputs["disease"], np.asarray(keras_model(batch, training=False)), atol=1e-6)
    head = gradcam.read_head(heatmap_head(name), WEIGHTS_DIR / name / "weights.npz")
    ours = gradcam.level_maps([outputs[k] for k in gradcam.feature_names(outputs)], head)
    through_head = tape_maps(keras_model, batch, through_whole_model=False)
    whole = tape_maps(keras_model, batch, through_whole_model=True)
    assert len(ours) == len(through_head) == {"cnn": 1, "unet": 4}[name]
    for level, (mine, theirs) in enumerate(zip(ours, through_head)):
        scale = float(np.abs(theirs).max())
        assert scale > 0, level
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOLERANCE * scale, err_msg=f"level {level}")
    # The level that feeds nothing but its pooling (the CNN's only one, the U-Net's last decoder level) gets the
    # very gradient of the whole model: there Grad-CAM here is Grad-CAM on the full graph.
    scale = float(np.abs(whole[-1]).max())
    np.testing.assert_allclose(ours[-1], whole[-1], rtol=0, atol=TOLERANCE * scale)
    squares = gradcam.heatmaps(outputs, head, 128)
    assert squares.shape == (len(batch), 128, 128) and np.all(squares >= 0)
    assert all(square.max() > square.min() for square in squares)


def test_the_head_gradient_is_the_logit_decomposition() -> None:
    """A Dense-ReLU-Dense head is linear where its ReLUs keep their state: logit = gradient . pooled + constant."""
    rng = np.random.default_rng(3)
    head = gradcam.DenseHead(
        kernels=(rng.normal(size=(6, 4)), rng.normal(size=(4, 1))),
        biases=(rng.normal(size=4), rng.normal(size=1)),
        activations=("relu", "linear"),
    )
    pooled = rng.normal(size=(5, 6))
    step = 1e-6 * rng.normal(size=(5, 6))
    hidden = lambda p: np.maximum(p @ head.kernels[0] + head.biases[0], 0) @ head.kernels[1] + head.biases[1]  # noqa: E731
    change = (hidden(pooled + step) - hidden(pooled))[:, 0]
    np.testing.assert_allclose(change, np.sum(head.logit_gradient(pooled) * step, axis=1), rtol=1e-5, atol=1e-12)


def test_a_weights_file_without_the_expected_head_is_refused(tmp_path) -> None:
    path = tmp_path / "weights.npz"
    np.savez(path, np.zeros((3, 3, 1, 8)), np.zeros(8), np.zeros((8, 2)), np.zeros(2))
    with pytest.raises(gradcam.HeatmapError, match="does not end in a dense head"):
        gradcam.read_head(heatmap_head("cnn"), path)


@pytest.mark.parametrize(
    ("width", "height", "shape"), [(96, 128, (128, 96)), (300, 100, (43, 128)), (50, 50, (128, 128))]
)
def test_the_map_is_cut_to_the_image_aspect_ratio(width: int, height: int, shape: tuple[int, int]) -> None:
    square = np.zeros((128, 128), np.float32)
    rows, cols = shape
    top, left = (128 - rows) // 2, (128 - cols) // 2
    square[top : top + rows, left : left + cols] = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)
    shown = render(square, width, height)
    assert shown.mode == "P" and shown.size == (cols, rows)
    values = np.asarray(shown)
    assert values.max() == 255 and values.min() == 0 and values[0, 0] == 0  # the zero padding was cut off
    assert len(np.unique(values)) > min(rows * cols, 256) // 2


def test_the_png_values_are_the_normalised_map_in_colour_and_as_opaque_as_they_are_high() -> None:
    heat = gradcam.normalise(np.array([[0.0, 1.0], [2.0, 4.0]]))
    assert heat.tolist() == [[0, 64], [128, 255]]
    out = io.BytesIO()
    picture(heat).save(out, format="PNG")
    shown = PILImage.open(out)
    assert np.asarray(shown).tolist() == heat.tolist()
    rgba = np.asarray(shown.convert("RGBA"))  # as a browser draws it
    assert rgba[..., 3].tolist() == heat.tolist() and not np.array_equal(rgba[0, 0, :3], rgba[1, 1, :3])
    assert gradcam.normalise(np.zeros((4, 4))).max() == 0
