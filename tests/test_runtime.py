"""Inference runtimes (models/runtime.py): every compiled runtime gives the Keras probabilities (and the cnn's and
unet's feature maps for heat maps) within 1e-4 on real X-rays for all four trained models; the ONNX export keeps
every output, is reproducible and is cached by content. No timing here: speed is the benchmark's business
(benchmarks/runtimes.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from models import onnx_build, onnx_export
from models.preprocess import load_and_preprocess
from models.registry import MODEL_NAMES, WEIGHTS_DIR, load_model, save_weights
from models.runtime import RUNTIMES, RuntimeChoiceError, make_runner
from settings import Settings
from tests.conftest import PIPELINE_IMAGES, PIPELINE_ORIGINALS
from worker.runtime import check_weights

TOLERANCE = 1e-4
SERVED_OUTPUTS = {  # the probability, the pooled features (findings) and the feature maps (heat maps)
    "cnn": ["disease", "features_0", "pooled_features"],
    "unet": ["disease", "features_0", "features_1", "features_2", "features_3", "pooled_features"],
    "seed-cnn": ["disease", "pooled_features"],
    "seed-unet": ["disease", "pooled_features"],
}


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


def real_batch(size: int, channels: int) -> np.ndarray:
    paths = sorted(PIPELINE_IMAGES.glob("*.png"))[:12] + sorted(PIPELINE_ORIGINALS.glob("*.png"))
    return np.stack([load_and_preprocess(p, size=size, channels=channels) for p in paths])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_runtime_gives_the_keras_probabilities(name: str, onnx_cache: Path) -> None:
    reference = load_model(name, runtime="keras")
    batch = real_batch(reference.input_size, reference.channels)
    expected = reference.predict(batch)
    expected_all = reference.predict_all(batch)
    assert expected.shape == (len(batch),) and np.all((expected >= 0) & (expected <= 1))
    for runtime in RUNTIMES[1:]:
        model = load_model(name, runtime=runtime, cache_dir=onnx_cache)
        assert model.runtime == runtime
        np.testing.assert_allclose(model.predict(batch), expected, atol=TOLERANCE, rtol=0, err_msg=runtime)
        outputs = model.predict_all(batch)
        assert list(outputs) == list(expected_all) == SERVED_OUTPUTS[name], runtime
        for output in outputs:
            np.testing.assert_allclose(outputs[output], expected_all[output], atol=TOLERANCE, rtol=0, err_msg=output)
        # Batches of any size, including one image, go through the same compiled program or graph.
        np.testing.assert_allclose(model.predict(batch[:1]), expected[:1], atol=TOLERANCE, rtol=0, err_msg=runtime)


def test_a_cached_onnx_file_is_served_without_building_the_keras_model(onnx_cache: Path) -> None:
    first = load_model("cnn", runtime="onnx", cache_dir=onnx_cache)
    again = load_model("cnn", runtime="onnx", cache_dir=onnx_cache)
    assert again.keras_model is None  # nothing was exported or built the second time
    batch = real_batch(128, 1)
    np.testing.assert_array_equal(again.predict(batch), first.predict(batch))
    expected_file = onnx_export.cache_path(WEIGHTS_DIR / "cnn" / "weights.npz", onnx_cache)
    assert list(onnx_cache.glob("cnn-*.onnx")) == [expected_file]


def test_the_onnx_export_is_reproducible(tmp_path: Path) -> None:
    digests = []
    for attempt in ("a", "b"):
        path = onnx_build.build("cnn", tmp_path / attempt)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_the_cache_key_follows_the_weights(tmp_path: Path) -> None:
    weights = tmp_path / "cnn" / "weights.npz"
    weights.parent.mkdir()
    weights.write_bytes((WEIGHTS_DIR / "cnn" / "weights.npz").read_bytes())
    before = onnx_export.cache_path(weights, tmp_path)
    assert before == onnx_export.cache_path(weights, tmp_path)
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert onnx_export.cache_path(weights, tmp_path) != before


def multi_output_model():
    """A small model shaped like the coming ones: a disease probability, per-finding scores and a map."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(32, 32, 1))
    features = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    cam = layers.Conv2D(1, 1, activation="sigmoid", name="cam")(features)
    pooled = layers.GlobalAveragePooling2D()(features)
    outputs = {
        "disease": layers.Dense(1, activation="sigmoid", name="disease")(pooled),
        "findings": layers.Dense(14, activation="sigmoid", name="findings")(pooled),
        "cam": cam,
    }
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_output_of_a_multi_output_model_is_kept_by_name(runtime: str, tmp_path: Path) -> None:
    keras_model = multi_output_model()
    weights = tmp_path / "multi" / "weights.npz"
    weights.parent.mkdir()
    save_weights(keras_model, weights)
    runner, _ = make_runner(runtime, lambda: keras_model, weights, tmp_path / "cache")
    batch = np.random.default_rng(1).random((5, 32, 32, 1), dtype=np.float32)
    expected = keras_model(batch, training=False)
    got = runner(batch)
    assert list(got) == list(runner.output_names) == ["cam", "disease", "findings"]
    assert got["cam"].shape == (5, 32, 32, 1) and got["findings"].shape == (5, 14)
    for name in got:
        np.testing.assert_allclose(got[name], np.asarray(expected[name]), atol=TOLERANCE, rtol=0, err_msg=name)


def test_an_unknown_runtime_is_refused_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(RuntimeChoiceError, match="choose from keras, tf-function, xla, onnx"):
        check_weights(Settings(home=tmp_path, runtime="tensorrt"))
    with pytest.raises(RuntimeChoiceError, match="needs a cache folder"):
        make_runner("onnx", lambda: None, WEIGHTS_DIR / "cnn" / "weights.npz", None)
