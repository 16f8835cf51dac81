"""Files in an S3 bucket (AWS, MinIO or any S3-compatible server) through boto3.

Chosen by RADBATCH_STORAGE_URL=s3://bucket/prefix; RADBATCH_S3_ENDPOINT_URL points at a server other than AWS;
credentials and region come from the usual AWS variables and files (boto3's own chain). A PUT is atomic and
durable once it returns, so `flush` has nothing to do.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterable
from typing import IO
from urllib.parse import urlsplit

from storage.base import Storage, StorageUnavailable, Stored

_BLOCK = 1024 * 1024
_IN_MEMORY = 64 * 1024 * 1024  # larger uploads spool to a temporary file while their digest is taken
_MISSING = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix ending in '/' or empty) of s3://bucket/prefix."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3Storage(Storage):
    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)

    def _key(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"not a storage name: {name!r}")
        return self.prefix + name

    def _call(self, method: str, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(kwargs.get("Key", "")) from None
            if code.startswith("5") or code in {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}:
                raise StorageUnavailable(f"object store {self.url}: {code}") from error
            raise
        except BotoCoreError as error:  # the endpoint could not be reached or the connection broke
            raise StorageUnavailable(f"object store {self.url}: {error}") from error

    def prepare(self) -> None:
        """Make the bucket if it is not there yet (a new MinIO); an existing one is left as it is."""
        try:
            self._call("head_bucket")
        except FileNotFoundError:
            self._call("create_bucket")

    def flush(self, names: Iterable[str]) -> None:
        """Nothing to do: S3 answers a PUT only once the object is stored."""

    def put(self, name: str, stream: IO[bytes]) -> Stored:
        digest, size = hashlib.sha256(), 0
        with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY) as spool:
            for block in iter(lambda: stream.read(_BLOCK), b""):
                digest.update(block)
                size += len(block)
                spool.write(block)
            spool.seek(0)
            self._call("put_object", Key=self._key(name), Body=spool.read() if size <= _IN_MEMORY else spool)
        return Stored(size=size, sha256=digest.hexdigest())

    def open(self, name: str) -> IO[bytes]:
        body = self._call("get_object", Key=self._key(name))["Body"]
        try:
            return io.BytesIO(body.read())  # read whole so that a broken connection fails here, not mid-decode
        except Exception as error:
            raise StorageUnavailable(f"object store {self.url}: {error}") from error
        finally:
            body.close()

    def delete(self, name: str) -> bool:
        existed = self.exists(name)
        if existed:
            self._call("delete_object", Key=self._key(name))
        return existed

    def exists(self, name: str) -> bool:
        try:
            self._call("head_object", Key=self._key(name))
            return True
        except FileNotFoundError:
            return False
