"""The `radbatch` console script against the real stack: awkward file names, --wait, --results, exit codes,
retries through a flaky proxy, status and results."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import services
from tests.conftest import PIPELINE_IMAGES, Stack
from tests.flaky_proxy import flaky_proxy

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("e2e_database_url", ["sqlite"], indirect=True)]
RADBATCH = services.BIN / "radbatch"
IMAGES = sorted(PIPELINE_IMAGES.glob("*.png"))
AWKWARD = [
    "a;b.png",
    "c,d.png",
    'say "cheese".png',
    "it's.png",
    "space name.png",
    "Ünïcødé 日本.png",
    "sub dir/x;y, z.png",
]


def radbatch(stack: Stack, *args: str, url: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    if not RADBATCH.exists():
        pytest.fail(f"{RADBATCH} is missing: `make deps` installs the project (pip install -e . --no-deps)")
    env = services.service_env({"RADBATCH_TOKEN": stack.token})
    argv = [str(RADBATCH), *args, "--url", url or stack.base_url]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def _folder(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(IMAGES[i % len(IMAGES)], target)
    return root


def _job_id(output: str) -> int:
    return int(re.search(r"^job (\d+) ", output, re.M).group(1))


def test_upload_awkward_names_wait_and_results_csv(e2e_stack: Stack, tmp_path: Path):
    folder = _folder(tmp_path / "scans ü", AWKWARD)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(IMAGES[0].read_bytes())
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]")
    out = tmp_path / "results.csv"
    result = radbatch(e2e_stack, "upload", str(folder), "--name", "cli awkward", "--wait", "--results", str(out))
    assert result.returncode == 1, result.stdout + result.stderr  # notes.txt failed
    assert "1 file(s) failed:" in result.stdout
    assert "scans ü/notes.txt: unsupported file type .txt" in result.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    expected = sorted([f"scans ü/{name}" for name in AWKWARD] + ["scans ü/notes.txt"])
    assert sorted(row["path"] for row in rows) == expected  # every name exactly, nothing hidden
    images = [row for row in rows if not row["path"].endswith(".txt")]
    assert all(row["status"] == "done" and 0 <= float(row["ensemble_probability"]) <= 1 for row in images)
    job = e2e_stack.api.job(_job_id(result.stdout))
    assert (job["name"], job["status"], job["total"], job["done"], job["failed"]) == ("cli awkward", "done", 8, 7, 1)


def test_clean_upload_exits_zero_then_status_and_results(e2e_stack: Stack, tmp_path: Path):
    folder = _folder(tmp_path / "ward 3", ["one.png", "two.png", "deep/three.png"])
    result = radbatch(e2e_stack, "upload", str(folder), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = _job_id(result.stdout)
    assert f"job {job_id} (ward 3): done, 3 of 3 images predicted, 0 failed" in result.stdout
    shown = radbatch(e2e_stack, "status", str(job_id))
    assert shown.returncode == 0 and "done" in shown.stdout and "3 of 3 processed, 0 failed" in shown.stdout
    as_json = json.loads(radbatch(e2e_stack, "status", str(job_id), "--json").stdout)
    assert as_json["id"] == job_id and as_json["finished_at"] and as_json["heatmaps"] is True  # the server's default
    to_stdout = radbatch(e2e_stack, "results", str(job_id), "--csv")
    assert to_stdout.returncode == 0 and to_stdout.stdout.startswith("image_id,path,")
    assert len(to_stdout.stdout.strip().splitlines()) == 4
    target = tmp_path / "out.csv"
    assert radbatch(e2e_stack, "results", str(job_id), "--csv", str(target)).returncode == 0
    assert target.read_text() == to_stdout.stdout
    lines = radbatch(e2e_stack, "results", str(job_id)).stdout.splitlines()
    assert sorted(json.loads(line)["path"] for line in lines) == [
        "ward 3/deep/three.png",
        "ward 3/one.png",
        "ward 3/two.png",
    ]
    missing = radbatch(e2e_stack, "status", "999999")
    assert missing.returncode == 1 and "(404): job 999999 not found" in missing.stderr


def test_upload_without_heat_maps(e2e_stack: Stack, tmp_path: Path):
    result = radbatch(e2e_stack, "upload", str(_folder(tmp_path / "quick", ["a.png"])), "--no-heatmaps", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert e2e_stack.api.job(_job_id(result.stdout))["heatmaps"] is False


def test_retries_5xx_with_the_same_idempotency_key(e2e_stack: Stack, tmp_path: Path):
    folder = _folder(tmp_path / "flaky", [f"img{i:02d}.png" for i in range(60)])  # two chunks of files

    def fail(method: str, path: str, earlier: int) -> bool:
        return (method == "POST" and path.endswith("/files") and earlier < 2) or (
            path.endswith("/close") and earlier < 1
        )

    with flaky_proxy(e2e_stack.base_url, fail) as proxy:
        result = radbatch(e2e_stack, "upload", str(folder), "--wait", url=proxy.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retrying in" in result.stderr
    chunk_posts = [seen for seen in proxy.seen if seen.path.endswith("/files")]
    assert [seen.failed for seen in chunk_posts] == [True, True, False, False]
    keys = [seen.headers.get("Idempotency-Key") for seen in chunk_posts]
    assert keys[0] == keys[1] == keys[2] != keys[3] and len(keys[0]) == 64  # retries of one chunk share its key
    job = e2e_stack.api.job(_job_id(result.stdout))
    assert (job["status"], job["total"], job["done"]) == ("done", 60, 60)  # nothing lost, nothing twice


def test_unreachable_server_exits_3(e2e_stack: Stack, tmp_path: Path):
    folder = _folder(tmp_path / "nowhere", ["a.png"])
    url = f"http://127.0.0.1:{services.free_port()}"
    result = radbatch(e2e_stack, "upload", str(folder), "--retries", "1", url=url)
    assert result.returncode == 3
    assert "gave up after 2 attempts" in result.stderr and "retrying in 1 s" in result.stderr


def test_resume_sends_only_what_the_job_does_not_hold(e2e_stack: Stack, tmp_path: Path):
    folder = _folder(tmp_path / "half", ["a.png", "b.png", "c.png"])
    held = [("half/a.png", (folder / "a.png").read_bytes()), ("half/b.png", b"not the same bytes as b.png")]
    job = e2e_stack.api.create_job(held, is_open=True)
    result = radbatch(e2e_stack, "upload", str(folder), "--resume", str(job["id"]), "--wait")
    assert "1 of 3 files already stored" in result.stdout + result.stderr
    paths = sorted(row["path"] for row in e2e_stack.api.results(job["id"]))
    assert paths == ["half/a.png", "half/b.png", "half/b.png", "half/c.png"]  # a.png skipped; b.png's content differs
    assert result.returncode == 1  # the job holds a file that is not an image (the stand-in for b.png)
