"""The file store's contract, the same for the local folder and for S3 over HTTP (a real S3 server process)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from settings import Settings
from storage import StorageUnavailable, names, storage_for
from storage.local import LocalStorage
from storage.s3 import S3Storage, parse_s3_url
from tests.object_store import AWS_ENV, ObjectStore, start_object_store


@pytest.fixture(scope="module")
def object_store(tmp_path_factory):
    server = start_object_store(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)


def s3_store(object_store: ObjectStore, bucket: str, prefix: str = "site") -> S3Storage:
    store = S3Storage(f"s3://{bucket}/{prefix}", object_store.endpoint_url)
    store.prepare()
    return store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, aws_env):
    if request.param == "local":
        return LocalStorage(tmp_path / "home")
    return s3_store(request.getfixturevalue("object_store"), f"contract-{os.getpid()}-{tmp_path.name[-20:]}".lower())


def test_put_returns_size_and_sha256_and_reads_back(store) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several of the copy's blocks
    stored = store.put(names.upload("a.dcm"), io.BytesIO(data))
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert store.exists(names.upload("a.dcm"))
    with store.open(names.upload("a.dcm")) as stream:
        assert stream.read() == data
    assert store.read(names.upload("a.dcm")) == data


def test_missing_files_and_delete(store) -> None:
    name = names.thumbnail(7)
    assert not store.exists(name)
    with pytest.raises(FileNotFoundError):
        store.read(name)
    assert store.delete(name) is False
    store.put_bytes(name, b"png")
    assert store.delete_all([name, names.heatmap(7, "cnn")]) == 1
    assert not store.exists(name)


def test_a_rewrite_replaces_the_whole_file(store) -> None:
    store.put_bytes(names.heatmap(3, "cnn"), b"first version, longer")
    store.put_bytes(names.heatmap(3, "cnn"), b"second")
    assert store.read(names.heatmap(3, "cnn")) == b"second"


def test_local_put_leaves_no_partial_file_when_the_copy_fails(tmp_path: Path) -> None:
    class Breaks(io.BytesIO):
        def read(self, size=-1):
            raise OSError("connection reset")

    store = LocalStorage(tmp_path)
    with pytest.raises(OSError, match="connection reset"):
        store.put(names.upload("b.png"), Breaks())
    assert list((tmp_path / "uploads").iterdir()) == []


def test_local_store_is_the_default_under_home(tmp_path: Path) -> None:
    store = storage_for(Settings(home=tmp_path))
    store.prepare()
    store.put_bytes(names.upload("x.png"), b"x")
    assert (tmp_path / "uploads" / "x.png").read_bytes() == b"x"
    assert oct((tmp_path / "uploads").stat().st_mode & 0o777) == "0o700"


def test_s3_store_keeps_nothing_under_home(tmp_path: Path, object_store, aws_env) -> None:
    settings = Settings(home=tmp_path, storage_url="s3://nohome/p", s3_endpoint_url=object_store.endpoint_url)
    store = storage_for(settings)
    store.prepare()
    store.put_bytes(names.upload("x.png"), b"x")
    store.put_bytes(names.thumbnail(1), b"t")
    assert list(tmp_path.iterdir()) == []
    assert {o["Key"] for o in store.client.list_objects_v2(Bucket="nohome")["Contents"]} == {
        "p/uploads/x.png",
        "p/thumbnails/1.png",
    }


def test_names_refuse_paths_that_leave_their_folder() -> None:
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            names.upload(bad)
    with pytest.raises(ValueError):
        LocalStorage(Path("/tmp")).read("uploads/../../etc/passwd")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert parse_s3_url("s3://bucket") == ("bucket", "")


def test_an_unreachable_object_store_is_unavailable_not_missing(tmp_path: Path, aws_env) -> None:
    server = start_object_store(tmp_path / "moto.log")
    store = s3_store(server, "outage")
    store.put_bytes(names.upload("kept.png"), b"kept")
    server.stop()
    try:
        with pytest.raises(StorageUnavailable):
            store.read(names.upload("kept.png"))
        with pytest.raises(StorageUnavailable):
            store.put_bytes(names.upload("new.png"), b"new")
    finally:
        server.stop()
