"""The one settings object. Every field can be set with the environment variable RADBATCH_<FIELD NAME>.

Reading the settings has no side effects: `python -m db.setup` creates the folders and the secret files.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import quote

SECRET_KEY_FILE = "secret_key"
WORKER_METRICS_OFFSET = 4540  # the worker's metrics port, unless set, is the web port plus this (5000 -> 9540)
REDIS_PASSWORD_FILE = "redis_password"


class SettingsError(ValueError):
    """An environment variable that cannot be read as its setting's type."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path("var")  # everything the app writes
    database_url: str = ""  # empty: SQLite at $RADBATCH_HOME/radbatch.db
    redis_url: str | None = None  # unset: `make run` starts its own Redis on redis_port
    redis_port: int = 6390
    port: int = 5000
    admin_token: str | None = field(default=None, repr=False)
    admin_password: str | None = field(default=None, repr=False)  # unset: generated into $RADBATCH_HOME/admin_password
    secret_key: str = field(default="", repr=False)  # empty: read from $RADBATCH_HOME/secret_key (db.setup makes it)
    batch_size: int = 32
    max_file_mb: int = 64
    deidentify: bool = True  # DICOM on ingest: PS3.15 Basic Profile on the stored copy, only a pseudonym in the DB
    visibility_timeout: int = 3600  # seconds before Redis itself hands out again a message a vanished worker took
    sweep_interval: int = 30  # seconds between recovery sweeps
    stuck_after: int = 60  # seconds an image may wait with no live message before the sweep sends it again
    max_attempts: int = 3  # deliveries that may start work on one image; the next one fails it with the reason
    open_job_ttl: int = 3600  # seconds without new files before the sweep closes an open job (0: never)
    task_soft_time_limit: int = 840  # seconds: a batch still running is stopped and its images retried one by one
    task_time_limit: int = 900  # seconds: the worker process is killed
    worker_concurrency: int = 1  # `make run`'s worker processes; each loads the models
    web_workers: int = 2  # `make run`'s gunicorn workers
    worker_max_memory_mb: int = 1536  # a worker child above this resident size is replaced after its batch
    redis_password: str = field(default="", repr=False)  # `make run`'s Redis; empty: from $RADBATCH_HOME/redis_password
    login_limit_per_ip: str = "50 per 15 minutes"  # failed log-ins, counted in Redis (Flask-Limiter notation)
    login_limit_per_user: str = "10 per 15 minutes"  # failed log-ins per user name, from any address
    session_hours: int = 12  # a login lasts at most this long
    secure_cookies: bool = False  # send the session cookie over HTTPS only (set it when users reach the app by HTTPS)
    hsts_seconds: int = 0  # >0: Strict-Transport-Security on HTTPS responses, for this many seconds
    proxy_count: int = 0  # reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host to trust
    retention_days: int = 0  # purge finished jobs this many days after they finished; 0 keeps them forever
    runtime: str = "onnx"  # how the worker runs the models: keras | tf-function | xla | onnx (models/runtime.py)
    decode_threads: int = 0  # threads per worker process that read, decode and preprocess images; 0: one per core
    heatmaps: bool = True  # a new job's default: the worker draws Grad-CAM heat maps of its images (per-job option)
    inference_threads: int = 0  # threads each model may use (ONNX Runtime's intra-op pool); 0: one per core
    worker_metrics_port: int | None = None  # the worker's Prometheus endpoint; unset: port + 4540 (9540); 0: none
    worker_metrics_host: str = "127.0.0.1"  # address it listens on (0.0.0.0 in containers)
    dicom_port: int = 11112  # the DICOM listener (C-STORE SCP, C-ECHO); `python -m listener`
    dicom_host: str = "127.0.0.1"  # address it listens on (0.0.0.0 to let a PACS on another machine in)
    dicom_aet: str = "RADBATCH"  # its AE title
    dicom_allowed_aets: tuple[str, ...] = ()  # calling AE titles it accepts; empty: any (loopback only)
    dicom_user: str = "admin"  # the user who owns the jobs of calling AE titles not in dicom_aet_users (must exist)
    dicom_aet_users: tuple[str, ...] = ()  # AET=user pairs: that sender's jobs belong to that user (also allowed)
    dicom_aet_priorities: tuple[
        str, ...
    ] = ()  # AET=urgent|normal|bulk pairs: that sender's jobs' lane (default normal)
    dicom_idle_timeout: int = 30  # seconds an association may stay silent before it is aborted
    dicom_artim_timeout: int = 10  # seconds a connection may wait before its association request (ARTIM)
    dicom_max_associations: int = 64  # associations at once, in all
    dicom_max_per_peer: int = 8  # connections at once from one IP address
    dicom_max_per_aet: int = 8  # associations at once from one calling AE title
    dicom_forward: str = ""  # AET@host:port: each study's SR is sent there by C-STORE; empty: no forwarding
    webhook_allow: tuple[str, ...] = ()  # non-public networks (CIDR) or host names webhooks may still reach
    max_open_jobs_per_user: int = 20  # open jobs (still taking files) one user may have at once; 0: no limit
    max_tokens_per_user: int = 20  # active API tokens one user may have; 0: no limit
    metrics_token: str | None = field(default=None, repr=False)  # set: GET /metrics needs "Bearer <it>"
    dicom_sources: str = ""  # PACS to pull from, ";"-separated NAME=AET@host:port[,dicomweb=URL] (dicomio/retrieve.py)
    retrieve_max_studies: int = 500  # a retrieval matching more studies is refused unless it asks for more
    dicom_forward_heatmaps: bool = False  # also send each heat map as a Secondary Capture with the study's SR
    fhir_forward: str = ""  # a FHIR R4 base URL: each finished study's Bundle is POSTed there; empty: none
    hl7_forward: str = ""  # host:port of an HL7 v2 MLLP receiver: an ORU^R01 per finished study; empty: none
    prevalence: float | None = None  # expected disease rate at this site (0-1); unset: the training data's (no shift)
    # show findings that failed validation (models.findings), labelled "not validated"; off: stored but shown nowhere
    show_unvalidated_findings: bool = False
    storage_url: str = ""  # where files are kept: empty, the folders under $RADBATCH_HOME; s3://bucket/prefix: S3
    s3_endpoint_url: str = ""  # an S3-compatible server (MinIO, ...); empty: AWS. Credentials: the AWS variables

    def __post_init__(self) -> None:
        home = Path(self.home).resolve()
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'radbatch.db'}")
        for name, file_name in (("secret_key", SECRET_KEY_FILE), ("redis_password", REDIS_PASSWORD_FILE)):
            if not getattr(self, name) and (home / file_name).is_file():
                object.__setattr__(self, name, (home / file_name).read_text().strip())
        if self.worker_metrics_port is None:  # below the web port when there is no room above it
            above = self.port + WORKER_METRICS_OFFSET
            object.__setattr__(
                self, "worker_metrics_port", above if above <= 65535 else self.port - WORKER_METRICS_OFFSET
            )
        if not 0 < self.task_soft_time_limit < self.task_time_limit:
            raise SettingsError("RADBATCH_TASK_SOFT_TIME_LIMIT must be positive and below RADBATCH_TASK_TIME_LIMIT")
        if self.max_attempts < 1:
            raise SettingsError("RADBATCH_MAX_ATTEMPTS must be at least 1")
        if self.prevalence is not None and not 0 < self.prevalence < 1:
            raise SettingsError("RADBATCH_PREVALENCE must be a disease rate strictly between 0 and 1, e.g. 0.2")

    @property
    def upload_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def thumbnail_dir(self) -> Path:
        return self.home / "thumbnails"

    @property
    def heatmap_dir(self) -> Path:
        """Grad-CAM heat maps, `<image id>-<model>.png` (worker/heatmaps.py); purged with their job."""
        return self.home / "heatmaps"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def models_dir(self) -> Path:
        """Models a site installs (`python -m models.install`) and the catalogue's roles (models/catalogue.py)."""
        return self.home / "models"

    @property
    def onnx_cache_dir(self) -> Path:
        """ONNX files exported from the committed weights, keyed by content (`python -m models.onnx_build`)."""
        return self.home / "cache" / "onnx"

    @property
    def worker_metrics_dir(self) -> Path:
        """prometheus-client's multiprocess files of the worker's processes; emptied when the worker starts."""
        return self.home / "metrics" / "worker"

    @property
    def effective_redis_url(self) -> str:
        """RADBATCH_REDIS_URL if set, else the local server that `make run` starts (with its password)."""
        if self.redis_url:
            return self.redis_url
        credentials = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{credentials}127.0.0.1:{self.redis_port}/0"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        hints = typing.get_type_hints(cls)
        values = {}
        for setting in fields(cls):
            raw = environ.get(f"RADBATCH_{setting.name.upper()}", "")
            if raw != "":
                values[setting.name] = _parse(setting.name, raw, hints[setting.name])
        return cls(**values)


def _parse(name: str, raw: str, hint: object) -> object:
    if hint is str or hint == str | None:
        return raw
    if hint is Path:
        return Path(raw)
    if hint is bool:
        if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise SettingsError(f"RADBATCH_{name.upper()} must be true or false, got {raw!r}")
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if hint == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if hint is int or hint == int | None:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"RADBATCH_{name.upper()} must be a whole number, got {raw!r}") from None
    if hint == float | None:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"RADBATCH_{name.upper()} must be a number, got {raw!r}") from None
    raise TypeError(f"no parser for setting {name} of type {hint}")
