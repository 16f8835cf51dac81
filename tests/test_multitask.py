"""Multi-task training (training.multitask): one epoch on the 40-image folder, then the saved disease model and
finding heads through the serving path: the registry on the ONNX runtime, models.findings on its pooled features,
the same numbers as the trained Keras graph from one forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.findings import FindingHeads
from models.registry import load_model
from training.data import load_arrays, load_records

MINI = Path(__file__).parent / "data" / "nih-mini"


def test_a_multitask_run_is_served_by_the_registry_and_the_finding_heads(tmp_path: Path) -> None:
    import keras

    from models.registry import load_weights
    from training.multitask import build_multitask
    from training.train_multitask import train_multitask

    out = tmp_path / "weights"
    card = train_multitask("cnn", MINI, tmp_path / "split.csv", out, epochs=1, min_positives=3, cache_dir=None)
    findings = card["recipe"]["findings"]
    assert findings and card["training"]["epochs_run"] == 1 and len(card["training"]["history"]) == 1
    assert (out / "cnn" / "weights.npz").stat().st_size < 2.5 * card["parameters"]  # float16: 2 bytes each
    assert (out / "cnn" / "history.json").exists()

    heads = FindingHeads.load(out)
    assert heads is not None and list(heads.findings) == findings and heads.served == ()  # none validated yet
    served = load_model("cnn", out, runtime="onnx", cache_dir=tmp_path / "onnx")
    x, _ = load_arrays(MINI, load_records(MINI)[:8], 128, 1)
    outputs = served.predict_all(x)
    probability, pooled = served.disease_and_features(outputs)
    assert served.heatmaps(outputs).shape == (8, 128, 128)

    keras.utils.set_random_seed(0)
    trained, backbone, finding_layer = build_multitask("cnn", findings, (128, 128, 1))
    load_weights(backbone, out / "cnn" / "weights.npz")
    with np.load(out / "findings" / "heads.npz") as stored:
        finding_layer.set_weights([stored["coef"], stored["intercept"]])
    reference = np.asarray(trained.predict(x, verbose=0))
    assert served.predict_raw(x) == pytest.approx(reference[:, 0], abs=1e-4)
    z = pooled.astype(np.float64) @ heads.coef + heads.intercept  # the heads read the served pooled features
    assert 1 / (1 + np.exp(-z)) == pytest.approx(reference[:, 1:], abs=1e-4)
    assert heads.probabilities({"cnn": pooled}).shape == (8, len(findings))
    assert probability.shape == (8,)
