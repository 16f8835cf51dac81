"""The command-line uploader's local side: walking a folder, chunking, idempotency keys, the HTTP retry loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.client import Client, ServerUnavailable
from cli.files import CHUNK_BYTES, LocalFile, chunk_key, chunks, walk
from tests import services


def test_walk_keeps_the_folder_name_and_skips_hidden_things(tmp_path: Path):
    root = tmp_path / "study ü"
    for name in ("b.png", "a;b.png", "sub/c.png", ".DS_Store", ".cache/d.png", "sub/.e.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * 3)
    assert [f.relative for f in walk(root)] == ["study ü/a;b.png", "study ü/b.png", "study ü/sub/c.png"]
    assert all(f.size == 3 for f in walk(root))


def _files(sizes: list[int]) -> list[LocalFile]:
    return [LocalFile(path=Path(f"/x/{i}"), relative=f"f/{i}", size=size) for i, size in enumerate(sizes)]


def test_chunks_hold_at_most_50_files_or_about_20_mb():
    assert [len(c) for c in chunks(_files([10] * 120))] == [50, 50, 20]
    mb = 2**20
    assert [len(c) for c in chunks(_files([8 * mb, 8 * mb, 8 * mb, 30 * mb, 1]))] == [2, 1, 1, 1]
    assert all(sum(f.size for f in c) <= CHUNK_BYTES or len(c) == 1 for c in chunks(_files([7 * mb] * 10)))


def test_chunk_keys_depend_on_job_paths_and_contents():
    key = chunk_key(7, ["a.png", "b.png"], ["h1", "h2"])
    assert key == chunk_key(7, ["a.png", "b.png"], ["h1", "h2"]) and len(key) == 64
    assert (
        len({key, chunk_key(8, ["a.png", "b.png"], ["h1", "h2"]), chunk_key(7, ["a.png", "b.png"], ["h1", "h3"])}) == 3
    )
    assert chunk_key(7, ["a", "b.png"], ["h", "h"]) != chunk_key(7, ["a.png", "b"], ["h", "h"])


def test_client_gives_up_after_its_attempts():
    retries: list[str] = []
    nowhere = Client(
        f"http://127.0.0.1:{services.free_port()}", "t", attempts=3, backoff_s=0.01, on_retry=retries.append
    )
    with pytest.raises(ServerUnavailable, match="gave up after 3 attempts"):
        nowhere.job(1)
    assert len(retries) == 2 and "network error" in retries[0]
