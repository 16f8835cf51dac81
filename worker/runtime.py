"""Per-process worker state: the loaded models, plus Celery signal hooks (settings and database sessions are
`worker.process`'s, re-exported here).

Models load once per pool process, after the fork (`worker_process_init`), never in the parent:
TensorFlow initialised before a fork deadlocks the children. Which models is the catalogue's business
(models/catalogue.py): the served ones, the ensemble and the shadow ones. The parent only checks that the
catalogue can serve and the runtime is known, so a worker without models stops at start-up instead of
serving anything. Before each batch a child compares the catalogue's files with those it loaded from and, when
an admin installed, promoted or demoted a model, loads the catalogue again (no restart needed).
Each child runs its models on RADBATCH_RUNTIME (models/runtime.py); with the ONNX runtime the first child to
start exports the ONNX files into $RADBATCH_HOME/cache/onnx.

The parent also prepares the metrics folder before it forks and serves the metrics of all its processes.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from celery import signals

from broker.heartbeat import Heartbeat
from models.catalogue import Catalogue, CatalogueError, catalogue_stamp, load_catalogue
from models.findings import FindingHeads
from models.registry import Ensemble, LoadedModel, ModelNotTrainedError
from models.runtime import RuntimeChoiceError, check_runtime
from settings import Settings
from worker import metrics
from worker.process import session_factory, settings
from worker.recovery import start_recovery

log = logging.getLogger(__name__)
__all__ = ["ModelSet", "WorkerConfigError", "check_weights", "load_models", "models", "session_factory", "settings"]


class WorkerConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelSet:
    models: dict[str, LoadedModel]  # the served single models (an ensemble's members among them)
    ensemble: Ensemble | None
    findings: FindingHeads | None = None  # None when the heads are untrained or need a model not served
    shadow: dict[str, LoadedModel] | None = None  # run on every image, stored apart, shown to admins only
    headline: str = ""  # the catalogue's headline model (db.studies)
    stamp: tuple = ()  # the catalogue files it was loaded from (models.catalogue.catalogue_stamp)

    def versions(self) -> dict[str, str]:
        findings = {"findings": self.findings.version} if self.findings else {}
        ensemble = {self.ensemble.name: self.ensemble.version} if self.ensemble else {}
        shadow = {f"{name} (shadow)": m.version for name, m in (self.shadow or {}).items()}
        return {name: m.version for name, m in self.models.items()} | ensemble | shadow | findings


_lock = threading.Lock()
_models: ModelSet | None = None
_heartbeat: Heartbeat | None = None


def check_weights(config: Settings) -> Catalogue:
    """The catalogue, once checked: raise CatalogueError, ModelNotTrainedError or RuntimeChoiceError unless it
    serves at least one model, every served ensemble's members are served, and the runtime is one we have."""
    check_runtime(config.runtime)
    catalogue = load_catalogue(config.models_dir)
    catalogue.check()
    for entry in catalogue.to_run:
        if not entry.path.is_file():
            raise ModelNotTrainedError(f"model {entry.name!r} has no file at {entry.path}")
    return catalogue


def load_models(config: Settings) -> ModelSet:
    from models.registry import load_entry  # imports TensorFlow for the built-in models

    stamp = catalogue_stamp(config.models_dir)
    catalogue = check_weights(config)
    loaded = {
        entry.name: load_entry(entry, config.runtime, config.onnx_cache_dir, config.inference_threads)
        for entry in catalogue.to_run
    }
    shadow = {e.name: loaded.pop(e.name) for e in catalogue.shadow if e.name in loaded}
    entry = catalogue.ensemble
    ensemble = Ensemble.load(entry.folder, entry.name) if entry is not None else None
    findings = FindingHeads.load()
    if findings is not None and not all(m in loaded and loaded[m].has_pooled_features for m in findings.feature_models):
        log.warning(
            "findings need pooled_features from %s, which are not all served: no findings", findings.feature_models
        )
        findings = None
    return ModelSet(loaded, ensemble, findings, shadow, catalogue.headline, stamp)


def models() -> ModelSet:
    """This process's models, loaded on first use; then announce readiness in Redis."""
    global _models, _heartbeat
    with _lock:
        if _models is not None and _models.stamp != catalogue_stamp(settings().models_dir):
            log.info("the model catalogue changed: loading it again in pid %d", os.getpid())
            _models = None
        if _models is None:
            _models = load_models(settings())
            log.info("models loaded in pid %d on %s: %s", os.getpid(), settings().runtime, _models.versions())
            metrics.announce_models(
                {
                    name: (m.version, m.runtime, m.runner.device)
                    for name, m in (_models.models | (_models.shadow or {})).items()
                }
            )
            if _heartbeat is not None:
                _heartbeat.stop()
            _heartbeat = Heartbeat(settings().effective_redis_url, _models.versions()).start()
    return _models


@signals.worker_init.connect
def _check_before_start(sender=None, **_kwargs) -> None:
    try:
        check_weights(settings())
    except (ModelNotTrainedError, CatalogueError, WorkerConfigError, RuntimeChoiceError, KeyError) as error:
        log.critical("radbatch worker cannot start: %s", error)
        raise SystemExit(f"radbatch worker cannot start: {error}") from error
    metrics.prepare_multiprocess_dir(settings())  # before the pool forks; nothing has imported prometheus yet


@signals.worker_process_init.connect
def _load_in_child(**_kwargs) -> None:
    try:
        models()
    except Exception as error:  # noqa: BLE001 - any failure here must stop this child loudly
        log.critical("radbatch worker process %d could not load its models: %s", os.getpid(), error, exc_info=True)
        raise SystemExit(3) from error


@signals.worker_process_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
    metrics.process_exited(os.getpid())


@signals.worker_ready.connect
def _start_recovery(sender=None, **_kwargs) -> None:
    start_recovery(settings(), sender.app)
    metrics.serve(settings())
