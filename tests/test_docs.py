"""The documentation stays true: the mkdocs site builds with --strict, and every shell command in README.md and docs/
runs as written.

Convention: a ```bash block preceded by `<!-- not-run: why -->` is not run (it starts `make run`, needs Docker,
trains for hours, or holds placeholders such as `TOKEN=...`; the comment says which, and which test covers it).
Every other block runs here, from a folder that looks like the repository (its top-level entries linked) and holds
the files the examples name (`study/`, `IM0001.dcm`), against a stack of this test's own: the web app on gunicorn
and the DICOM listener, with `$TOKEN` set. The docs' addresses (`http://127.0.0.1:5000`, `127.0.0.1 11112`) are
replaced by that stack's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import services
from tests.conftest import SHARED_DATA, skip_or_fail
from tests.dicom_network_helpers import start_listener
from tests.stack import web_alone

REPO = services.REPO_ROOT
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:^<!-- not-run: (?P<why>.+?) -->\n)?^```bash\n(?P<body>.*?)^```", re.M | re.S)
EXAMPLE_DICOM = "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819_CR_jpegbaseline.dcm"  # JPEG baseline


@dataclass(frozen=True)
class Block:
    where: str
    body: str
    not_run: str | None


def shell_blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start("body")].count("\n")
            found.append(Block(f"{path.relative_to(REPO)}:{line}", match["body"], match["why"]))
    return found


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = subprocess.run(
        [str(services.BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "pacs" / "index.html").is_file()


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = shell_blocks()
    assert len(blocks) > 10 and [b for b in blocks if b.not_run is not None and len(b.not_run) < 20] == []
    assert any("storescu" in b.body for b in blocks if b.not_run is None)


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str, int]]:
    """The web app and the DICOM listener on their own database and Redis: (environment with TOKEN, base URL,
    DICOM port)."""
    dicom_port = services.free_port()
    home = tmp_path_factory.mktemp("docs-stack")
    with web_alone(home, "admin", RADBATCH_DICOM_PORT=str(dicom_port)) as (env, base_url, token):
        listener = start_listener(env, home / "dicom.log")
        try:
            yield env | {"TOKEN": token}, base_url, dicom_port
        finally:
            services.stop_process(listener)


def scratch_checkout(folder: Path) -> Path:
    """A folder whose top-level entries are the repository's (linked), plus the files the examples send."""
    for entry in REPO.iterdir():
        if entry.name not in (".git", "var"):
            (folder / entry.name).symlink_to(entry)
    dicom = SHARED_DATA / "dicom"
    if not dicom.is_dir():
        skip_or_fail(f"the shared DICOM examples are not at {dicom}")
    shutil.copytree(dicom, folder / "study")
    shutil.copyfile(dicom / EXAMPLE_DICOM, folder / "IM0001.dcm")
    return folder


RUNNABLE = [block for block in shell_blocks() if block.not_run is None]


@pytest.mark.e2e
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.where for block in RUNNABLE])
def test_the_command_runs_as_written(block: Block, docs_stack, tmp_path: Path) -> None:
    env, base_url, dicom_port = docs_stack
    script = block.body.replace("http://127.0.0.1:5000", base_url).replace("127.0.0.1 11112", f"127.0.0.1 {dicom_port}")
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=scratch_checkout(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, f"{block.where}\n{script}\n{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}"
    assert "E: " not in ran.stderr, ran.stderr  # dcmtk reports a failed store on stderr
    if "storescu" in script:  # the folder's two distinct instances (a third file repeats one) went in as one job
        assert '"name":"DICOM from MYPACS at ' in ran.stdout and '"status":"queued","total":2}' in ran.stdout
    if "dicomweb/studies" in script:
        assert '"00081199"' in ran.stdout  # ReferencedSOPSequence: the instance was stored
