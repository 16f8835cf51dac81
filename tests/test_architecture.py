"""The layering docs/architecture.md promises, checked on the source: who may import whom, and no import circles."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from settings import Settings, SettingsError
from tests.services import REPO_ROOT, service_env

PACKAGES = (
    "web",
    "worker",
    "db",
    "models",
    "training",
    "broker",
    "ingest",
    "dicomio",
    "formats",
    "listener",
    "deploy",
    "benchmarks",
    "cli",
    "interop",
    "storage",
)
TENSORFLOW = ("tensorflow", "keras")

FORBIDDEN = {
    "web": ("worker", "training", *TENSORFLOW),
    "ingest": ("web", "worker", "training", *TENSORFLOW),
    "broker": ("web", "worker", "ingest", "training", "models", *TENSORFLOW),
    "db": ("web", "worker", "ingest", "training", "models", *TENSORFLOW),
    # Classifiers and their one preprocessing path take a decoded picture: reading files is dicomio's and formats'.
    "models": ("db", "web", "worker", "ingest", "broker", "training", "dicomio", "formats", "listener"),
    # The worker reads through the reader registry; it never climbs back into ingest or the listener.
    "worker": ("web", "training", "ingest", "listener"),
    # The DICOM listener stores through ingest, like the web app; it never predicts.
    "listener": ("web", "worker", "training", *TENSORFLOW),
    # Every piece of DICOM reading, writing and metadata; the listener and DICOMweb call it, never the reverse.
    "dicomio": ("db", "web", "worker", "ingest", "broker", "training", "listener", "formats", *TENSORFLOW),
    # The reader registry: each format's detection, reader and ingest preparation, registered once.
    "formats": ("db", "web", "worker", "ingest", "broker", "training", "listener", *TENSORFLOW),
    # Results out to clinical systems (FHIR, HL7 v2), built from plain study summaries.
    "interop": ("db", "web", "worker", "ingest", "broker", "training", "listener", "formats", *TENSORFLOW),
    # The command-line client talks HTTP only: it installs and runs without any server part.
    # The file store takes stored names, never rows: it serves db (purge) and everything above it.
    "storage": ("db", "web", "worker", "ingest", "broker", "training", "listener", "models", *TENSORFLOW),
    "cli": ("web", "worker", "db", "models", "training", "broker", "ingest", "deploy", "settings", *TENSORFLOW),
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function; `from a import b` gives `a` and `a.b` (b may be
    a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def source_files(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


def top_level(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_its_layer_allows(package: str) -> None:
    offences = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in source_files(package)
        for module in imported_modules(path)
        if top_level(module) in FORBIDDEN[package]
    ]
    assert offences == []


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from package import module` counts as importing the module).

    A package importing its own submodules is left out: that is containment (a Flask blueprint package imports
    its view modules, which take `bp` from it, to register their routes), not one concern depending on another.
    """
    files = [REPO_ROOT / "settings.py"] + [f for pkg in PACKAGES for f in source_files(pkg)]
    modules = {module_name(path): path for path in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {
            target
            for target in imported_modules(path)
            if target in modules and target != name and not target.startswith(name + ".")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan): each is at least one import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    """Not even through imports inside functions: a circle means two modules that are one concern, or a
    command living inside the library module it drives."""
    assert cycles(import_graph()) == []


def test_the_circle_check_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_web() -> None:
    outside = [p for p in REPO_ROOT.glob("*.py")] + [f for pkg in PACKAGES if pkg != "web" for f in source_files(pkg)]
    offences = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in outside
        for module in imported_modules(path)
        if top_level(module) == "web"
    ]
    assert offences == []


def test_building_the_web_app_loads_no_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys; from web import create_app; create_app(); "
        "loaded = [m for m in ('tensorflow', 'keras', 'worker', 'training') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    env = service_env({"RADBATCH_HOME": str(tmp_path), "RADBATCH_SECRET_KEY": "x"})
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()


def test_every_module_stays_under_300_lines() -> None:
    long = [
        f"{path.relative_to(REPO_ROOT)}: {n} lines"
        for pkg in PACKAGES
        for path in source_files(pkg)
        if (n := len(path.read_text().splitlines())) >= 300
    ]
    assert long == []


def test_settings_read_every_field_from_its_environment_variable(tmp_path: Path) -> None:
    environ = {
        "RADBATCH_HOME": str(tmp_path),
        "RADBATCH_BATCH_SIZE": "8",
        "RADBATCH_DICOM_ALLOWED_AETS": "PACS1, PACS2",
        "RADBATCH_REDIS_URL": "redis://example:1/0",
        "RADBATCH_STUCK_AFTER": "12",
    }
    settings = Settings.from_env(environ)
    assert (settings.home, settings.batch_size, settings.dicom_allowed_aets) == (tmp_path, 8, ("PACS1", "PACS2"))
    assert (settings.effective_redis_url, settings.stuck_after) == ("redis://example:1/0", 12)
    assert settings.database_url == f"sqlite:///{tmp_path / 'radbatch.db'}"
    assert Settings.from_env({"RADBATCH_HOME": str(tmp_path)}) == Settings(home=tmp_path)
    with pytest.raises(SettingsError, match="RADBATCH_BATCH_SIZE must be a whole number"):
        Settings.from_env({"RADBATCH_BATCH_SIZE": "many"})
    with pytest.raises(SettingsError, match="RADBATCH_TASK_SOFT_TIME_LIMIT must be positive and below"):
        Settings.from_env({"RADBATCH_TASK_SOFT_TIME_LIMIT": "900", "RADBATCH_TASK_TIME_LIMIT": "900"})


def test_reading_the_settings_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Settings.from_env({"RADBATCH_HOME": str(home)})
    assert not home.exists()
    home.mkdir()
    (home / "secret_key").write_text("kept\n")
    os.chmod(home / "secret_key", 0o600)
    assert Settings(home=home).secret_key == "kept"


STORED_FOLDERS = re.compile(r"\b(upload_dir|thumbnail_dir|heatmap_dir)\b|[\"'](uploads|thumbnails|heatmaps)/")


def test_only_storage_knows_where_files_are_kept() -> None:
    """Nothing but `storage` (and settings, which names the local folders) builds a path to an upload, a
    thumbnail or a heat map: every reader and writer goes through the store, so S3 works everywhere."""
    offences = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for package in PACKAGES
        if package != "storage"
        for path in source_files(package)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if STORED_FOLDERS.search(line)
    ]
    assert not offences, offences


def test_purge_knows_every_model_that_draws_heat_maps() -> None:
    from models.registry import MODEL_NAMES
    from storage.names import HEATMAP_MODELS

    assert set(MODEL_NAMES) <= set(HEATMAP_MODELS)
