"""deploy/kubernetes/ against the Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors).
KEDA's ScaledObject and TriggerAuthentication are CRDs outside those schemas: their shape is checked here by hand.
No cluster is run."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from broker import WORKER_QUEUES, predict_lists
from tests.services import REPO_ROOT

KUBERNETES_VERSION = "1.30.0"
MANIFESTS = sorted((REPO_ROOT / "deploy" / "kubernetes").glob("*.yaml"))
DOCUMENTS = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]
CORE = [doc for doc in DOCUMENTS if not doc["apiVersion"].startswith("keda.sh/")]


@pytest.mark.parametrize("document", CORE, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_manifest_is_valid_for_kubernetes(document) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_pieces_are_all_there() -> None:
    deployments = {d["metadata"]["name"]: d for d in CORE if d["kind"] == "Deployment"}
    assert set(deployments) == {"radbatch-web", "radbatch-listener", "radbatch-worker-cpu", "radbatch-worker-gpu"}
    gpu = deployments["radbatch-worker-gpu"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    for name in ("radbatch-worker-cpu", "radbatch-worker-gpu"):
        command = deployments[name]["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[command.index("-Q") + 1] == WORKER_QUEUES


def test_keda_scales_gpu_workers_on_the_sum_of_every_shard_and_lane_list() -> None:
    scaled = next(d for d in DOCUMENTS if d["kind"] == "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "radbatch-worker-gpu"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    lists = [t["metadata"]["listName"] for t in triggers]
    assert sorted(lists) == sorted(predict_lists())  # kombu's real list names, priority suffix included
    modifier = scaled["spec"]["advanced"]["scalingModifiers"]
    assert sorted(modifier["formula"].split(" + ")) == sorted(t["name"] for t in triggers)
    assert int(modifier["target"]) > 0 and modifier["metricType"] == "AverageValue"
    auth = {d["metadata"]["name"] for d in DOCUMENTS if d["kind"] == "TriggerAuthentication"}
    assert {t["authenticationRef"]["name"] for t in scaled["spec"]["triggers"]} <= auth
