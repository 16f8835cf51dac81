"""The one settings object. Every field can be set with the environment variable RADBATCH_<FIELD NAME>.

Reading the settings has no side effects: `python -m db.setup` creates the folders and the secret files.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

SECRET_KEY_FILE = "secret_key"


class SettingsError(ValueError):
    """An environment variable that cannot be read as its setting's type."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path("var")  # everything the app writes
    database_url: str = ""  # empty: SQLite at $RADBATCH_HOME/radbatch.db
    redis_url: str | None = None  # unset: `make run` starts its own Redis on redis_port
    redis_port: int = 6390
    port: int = 5000
    admin_token: str | None = None
    admin_password: str | None = None  # unset: generated once into $RADBATCH_HOME/admin_password
    secret_key: str = ""  # empty: read from $RADBATCH_HOME/secret_key, which db.setup creates
    batch_size: int = 32
    max_file_mb: int = 64
    served_models: tuple[str, ...] = ("cnn", "unet")
    visibility_timeout: int = 3600  # seconds before a message taken by a vanished worker is handed out again
    sweep_interval: int = 60  # seconds between recovery sweeps
    stuck_after: int = 300  # seconds an image may wait queued before the sweep sends it again
    worker_concurrency: int = 1  # `make run`'s worker processes; each loads the models
    web_workers: int = 2  # `make run`'s gunicorn workers
    runtime: str = "onnx"  # how the worker runs the models: keras | tf-function | xla | onnx (models/runtime.py)
    decode_threads: int = 0  # threads per worker process that read, decode and preprocess images; 0: one per core
    inference_threads: int = 0  # threads each model may use (ONNX Runtime's intra-op pool); 0: one per core
    worker_metrics_port: int = 9540  # the worker's Prometheus endpoint, for all its processes; 0: none
    worker_metrics_host: str = "127.0.0.1"  # address it listens on (0.0.0.0 in containers)

    def __post_init__(self) -> None:
        home = Path(self.home).resolve()
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'radbatch.db'}")
        if not self.secret_key and (home / SECRET_KEY_FILE).is_file():
            object.__setattr__(self, "secret_key", (home / SECRET_KEY_FILE).read_text().strip())

    @property
    def upload_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def thumbnail_dir(self) -> Path:
        return self.home / "thumbnails"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def onnx_cache_dir(self) -> Path:
        """ONNX files exported from the committed weights, named by their content key (models/onnx_export.py)."""
        return self.home / "cache" / "onnx"

    @property
    def worker_metrics_dir(self) -> Path:
        """prometheus-client's multiprocess files of the worker's processes; emptied when the worker starts."""
        return self.home / "metrics" / "worker"

    @property
    def effective_redis_url(self) -> str:
        """RADBATCH_REDIS_URL if set, else the local server that `make run` starts."""
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        hints = typing.get_type_hints(cls)
        values = {}
        for field in fields(cls):
            raw = environ.get(f"RADBATCH_{field.name.upper()}", "")
            if raw != "":
                values[field.name] = _parse(field.name, raw, hints[field.name])
        return cls(**values)


def _parse(name: str, raw: str, hint: object) -> object:
    if hint is str or hint == str | None:
        return raw
    if hint is Path:
        return Path(raw)
    if hint == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"RADBATCH_{name.upper()} must be a whole number, got {raw!r}") from None
    raise TypeError(f"no parser for setting {name} of type {hint}")
