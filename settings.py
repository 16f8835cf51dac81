"""The one settings object, read from RADBATCH_* environment variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"RADBATCH_{name}")
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    home: Path = Path("var")
    database_url: str = ""
    redis_url: str | None = None
    redis_port: int = 6390
    port: int = 5000
    admin_token: str | None = None
    secret_key: str = ""
    batch_size: int = 32
    max_file_mb: int = 64
    served_models: tuple[str, ...] = ("cnn", "unet")
    admin_password: str | None = None
    # A message taken by a worker that vanished comes back after this long; longer than any batch takes.
    visibility_timeout_s: int = 3600
    sweep_interval_s: int = 60  # how often the recovery sweep looks for lost work
    stuck_after_s: int = 300  # how long an image may sit queued before the sweep sends it again
    worker_concurrency: int = 1  # `make run`'s worker processes; each loads the models
    web_workers: int = 2  # `make run`'s gunicorn workers

    @property
    def upload_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def thumbnail_dir(self) -> Path:
        return self.home / "thumbnails"

    @property
    def effective_redis_url(self) -> str:
        """RADBATCH_REDIS_URL if set, else the local server that `make run` starts."""
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("HOME", "var")).resolve()
        return cls(
            home=home,
            database_url=_env("DATABASE_URL", f"sqlite:///{home / 'radbatch.db'}"),
            redis_url=_env("REDIS_URL"),
            redis_port=int(_env("REDIS_PORT", "6390")),
            port=int(_env("PORT", "5000")),
            admin_token=_env("ADMIN_TOKEN"),
            secret_key=_env("SECRET_KEY") or _persistent_secret(home),
            batch_size=int(_env("BATCH_SIZE", "32")),
            max_file_mb=int(_env("MAX_FILE_MB", "64")),
            served_models=tuple(_env("SERVED_MODELS", "cnn,unet").split(",")),
            admin_password=_env("ADMIN_PASSWORD"),
            visibility_timeout_s=int(_env("VISIBILITY_TIMEOUT", "3600")),
            sweep_interval_s=int(_env("SWEEP_INTERVAL", "60")),
            stuck_after_s=int(_env("STUCK_AFTER", "300")),
            worker_concurrency=int(_env("WORKER_CONCURRENCY", "1")),
            web_workers=int(_env("WEB_WORKERS", "2")),
        )


def _persistent_secret(home: Path) -> str:
    """A secret key generated once per installation and kept under RADBATCH_HOME."""
    path = home / "secret_key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
