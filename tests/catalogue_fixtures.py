"""A third model for the catalogue tests, built here with onnx.helper: a small classifier whose disease score is a
linear function of the image's mean intensity (logit = scale * (mean - offset)), as a probability or a logit, and its
card. It is what a site brings: an ONNX file and a JSON card, nothing radbatch has seen before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def classifier_onnx(
    path: Path, size: int = 64, channels: int = 1, kind: str = "probability", scale: float = 8.0, offset: float = 0.45
) -> Path:
    """Write the model; (batch, size, size, channels) in, `disease` (batch, 1) out."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", size, size, channels])
    disease = helper.make_tensor_value_info("disease", TensorProto.FLOAT, ["batch", 1])
    constants = [
        helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
    ]
    last = "disease" if kind == "logit" else "logit"
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["mean"], ["flat"], axis=1),
        helper.make_node("Sub", ["flat", "offset"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], [last]),
    ]
    if kind == "probability":
        nodes.append(helper.make_node("Sigmoid", ["logit"], ["disease"]))
    graph = helper.make_graph(nodes, "mean-intensity", [image], [disease], initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="radbatch-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def expected_probability(batch: np.ndarray, scale: float = 8.0, offset: float = 0.45) -> np.ndarray:
    """What the model says, computed in NumPy: the uncalibrated probability of disease."""
    z = scale * (batch.reshape(len(batch), -1).mean(axis=1, dtype=np.float64) - offset)
    return 1.0 / (1.0 + np.exp(-z))


def card(name: str = "third", version: str = "third-1", size: int = 64, kind: str = "probability", **extra) -> dict:
    return {
        "name": name,
        "version": version,
        "input": {"size": size, "channels": 1, "preprocess": "models.preprocess.preprocess"},
        "output": {"name": "disease", "kind": kind},
        "threshold": 0.5,
        "prevalence": 0.5,
        "heads": ["disease"],
        "licence": "CC0 (a test model)",
        "intended_use": "tests only: says disease for bright images",
    } | extra


def model_folder(folder: Path, **card_fields) -> Path:
    """A folder holding model.onnx and card.json, as `python -m models.install FOLDER` takes it."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = card(**card_fields)
    classifier_onnx(folder / "model.onnx", size=fields["input"]["size"], kind=fields["output"]["kind"])
    (folder / "card.json").write_text(json.dumps(fields))
    return folder
