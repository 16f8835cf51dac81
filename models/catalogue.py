"""The catalogue: the one list of models radbatch knows, each one as data, with its role (served, shadow or off).

Built-in models are listed in `models/weights/catalogue.json` (their version, input, threshold and calibration
come from their own card.json; the ensemble's from ensemble.json, which names its members). A site's own models
are installed by `python -m models.install` under `$RADBATCH_HOME/models/<name>/<version>/` (the ONNX file and its
card.json). A role changed by an admin (`python -m models.roles`, or the comparison page) is kept in
`$RADBATCH_HOME/models/roles.json`, which overrides the built-in role and says which installed version is active.

Reading the catalogue reads small JSON files only: no TensorFlow, no ONNX Runtime, so the web app, the listener
and the DICOM code can all read it. Nothing outside this module and `models.registry` names a model.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILTIN_DIR = Path(__file__).resolve().parent / "weights"
BUILTIN_LIST = BUILTIN_DIR / "catalogue.json"
ROLES_FILE = "roles.json"
ROLES = ("served", "shadow", "off")
OUTPUT_KINDS = ("probability", "logit")
log = logging.getLogger(__name__)
PALETTE = ("#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4b5563")


class CatalogueError(ValueError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    role: str
    runtime: str  # keras-weights | onnx | ensemble
    folder: Path  # where its file and card are
    file: str = ""  # relative to `folder`; "" for the ensemble
    input_size: int = 128
    channels: int = 1
    preprocess: str = "models.preprocess.preprocess"
    output: str = "probability"  # what the disease output holds: probability | logit
    output_name: str = ""  # the model output that holds it; "": `disease` if there is one, else the first
    threshold: float = 0.5
    calibration: dict | None = None
    heads: tuple[str, ...] = ("disease",)
    validated_findings: tuple[str, ...] = ()
    heatmap_head: tuple[str, ...] = ()  # the Dense activations after the pooled features (models.gradcam); ()
    members: tuple[str, ...] = ()  # an ensemble's members
    headline: bool = False  # the study-level result (db.studies) and the SR's headline
    colour: str = ""
    licence: str = ""
    intended_use: str = ""
    card: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_ensemble(self) -> bool:
        return self.runtime == "ensemble"

    @property
    def heatmaps(self) -> bool:
        return bool(self.heatmap_head)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    def public(self) -> dict[str, Any]:
        """What `GET /api/v1/models` says about it."""
        return {
            "name": self.name,
            "version": self.version,
            "role": self.role,
            "runtime": self.runtime,
            "input": {"size": self.input_size, "channels": self.channels, "preprocess": self.preprocess},
            "output": self.output,
            "threshold": self.threshold,
            "calibration": (self.calibration or {}).get("method", "none"),
            "heads": list(self.heads),
            "validated_findings": list(self.validated_findings),
            "heatmaps": self.heatmaps,
            "members": list(self.members),
            "headline": self.headline,
            "licence": self.licence,
            "intended_use": self.intended_use,
        }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CatalogueError(f"the catalogue needs {path}, which is missing") from None


def entry_from_card(meta: dict, card: dict, folder: Path, role: str) -> ModelEntry:
    """A catalogue entry from the catalogue's own fields (`meta`) and the model's card (the card wins on what it
    measured: version, input, threshold, calibration)."""
    data = {**meta, **card}
    size = data.get("input", {})
    output = data.get("output", {})
    kind = output.get("kind", "probability") if isinstance(output, dict) else "probability"
    if kind not in OUTPUT_KINDS:
        raise CatalogueError(f"model {data.get('name')!r}: output.kind must be one of {', '.join(OUTPUT_KINDS)}")
    findings = card.get("validated_findings", ())
    return ModelEntry(
        name=str(data["name"]),
        version=str(data["version"]),
        role=role,
        runtime=str(data.get("runtime", "onnx")),
        folder=folder,
        file=str(data.get("file", "")),
        input_size=int(size.get("size", 128)),
        channels=int(size.get("channels", 1)),
        preprocess=str(size.get("preprocess", "models.preprocess.preprocess")),
        output=kind,
        output_name=str(output.get("name") or "") if isinstance(output, dict) else "",
        threshold=float(data.get("threshold", 0.5)),
        calibration=data.get("calibration"),
        heads=tuple(data.get("heads", ("disease",))),
        validated_findings=tuple(findings),
        heatmap_head=tuple(data.get("heatmap_head", ())),
        members=tuple(data.get("members", ())),
        headline=bool(data.get("headline", False)),
        colour=str(data.get("colour", "")),
        licence=str(data.get("licence", "")),
        intended_use=str(data.get("intended_use", "")),
        card=card,
    )


def read_roles(models_dir: Path) -> dict[str, dict[str, str]]:
    path = models_dir / ROLES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_roles(models_dir: Path, roles: dict[str, dict[str, str]]) -> None:
    """Atomically: a worker or web process reading it meanwhile sees the old file or the new one."""
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = models_dir / f".{ROLES_FILE}.{os.getpid()}.part"
    partial.write_text(json.dumps(roles, indent=2, sort_keys=True) + "\n")
    os.replace(partial, models_dir / ROLES_FILE)


def installed_versions(models_dir: Path, name: str) -> list[str]:
    """The versions of an installed model, oldest install first."""
    folder = models_dir / name
    if not folder.is_dir():
        return []
    found = [d for d in folder.iterdir() if (d / "card.json").is_file()]
    return [d.name for d in sorted(found, key=lambda d: ((d / "card.json").stat().st_mtime, d.name))]


@dataclass(frozen=True)
class Catalogue:
    entries: tuple[ModelEntry, ...]  # in display order: single models, then ensembles

    def entry(self, name: str) -> ModelEntry:
        for found in self.entries:
            if found.name == name:
                return found
        raise CatalogueError(f"no model {name!r} in the catalogue; it has {', '.join(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def with_role(self, role: str) -> tuple[ModelEntry, ...]:
        return tuple(e for e in self.entries if e.role == role)

    @property
    def served(self) -> tuple[ModelEntry, ...]:
        return self.with_role("served")

    @property
    def served_names(self) -> tuple[str, ...]:
        """Every model whose results users see (the ensemble too), in the order every page, CSV and SR lists them."""
        return tuple(e.name for e in self.served)

    @property
    def shadow(self) -> tuple[ModelEntry, ...]:
        return self.with_role("shadow")

    @property
    def headline(self) -> str:
        """The model whose result is the study's (db.studies) and the SR's headline: the served entry marked so,
        else the last served one (an ensemble comes last)."""
        served = self.served
        marked = [e.name for e in served if e.headline]
        return (marked or [e.name for e in served] or [""])[0 if marked else -1]

    @property
    def ensemble(self) -> ModelEntry | None:
        """The served ensemble (the shadow comparison's reference), if any."""
        return next((e for e in self.served if e.is_ensemble), None)

    @property
    def to_run(self) -> tuple[ModelEntry, ...]:
        """The single models a worker loads: the served, the shadow ones and any served ensemble's members."""
        members = {m for e in self.served if e.is_ensemble for m in e.members}
        return tuple(
            e for e in self.entries if not e.is_ensemble and (e.role in ("served", "shadow") or e.name in members)
        )

    @property
    def heatmap_models(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.served if e.heatmaps)

    def colour(self, name: str) -> str:
        found = next((e for e in self.entries if e.name == name), None)
        if found is not None and found.colour:
            return found.colour
        return PALETTE[sum(map(ord, name)) % len(PALETTE)]

    def check(self) -> None:
        """Raise CatalogueError unless it can serve: one served model at least, each served ensemble's members
        in the catalogue and served too."""
        if not self.served:
            raise CatalogueError("no model is served: promote one (python -m models.roles promote NAME)")
        for ensemble in (e for e in self.served if e.is_ensemble):
            for member in ensemble.members:
                if self.entry(member).role != "served":
                    raise CatalogueError(f"the served ensemble {ensemble.name!r} needs {member!r} served too")


def _builtin(roles: dict[str, dict[str, str]], builtin_dir: Path) -> list[ModelEntry]:
    entries = []
    for meta in _read_json(builtin_dir / "catalogue.json")["models"]:
        card_path = builtin_dir / meta["card"]
        if not card_path.is_file():
            continue  # not trained here (a fresh checkout without weights): not in the catalogue
        card = _read_json(card_path)
        card = {k: v for k, v in card.items() if k not in ("name", "runtime", "file")}
        findings = builtin_dir / meta.get("findings_card", "-")
        if findings.is_file():  # the finding heads it feeds (models/findings.py) and the ones that passed validation
            card["validated_findings"] = _read_json(findings).get("served", [])
        role = roles.get(meta["name"], {}).get("role", meta.get("role", "off"))
        entries.append(entry_from_card({**meta, "file": meta.get("file", "")}, card, builtin_dir, role))
    return entries


def _installed(models_dir: Path, roles: dict[str, dict[str, str]], taken: set[str]) -> list[ModelEntry]:
    entries = []
    if not models_dir.is_dir():
        return entries
    for folder in sorted(d for d in models_dir.iterdir() if d.is_dir() and d.name not in taken):
        versions = installed_versions(models_dir, folder.name)
        if not versions:
            continue
        state = roles.get(folder.name, {})
        version = state.get("version") if state.get("version") in versions else versions[-1]
        try:
            card = _read_json(folder / version / "card.json")
            entries.append(entry_from_card({}, card, folder / version, state.get("role", "shadow")))
        except (CatalogueError, KeyError, TypeError, ValueError) as error:  # one bad folder must not hide the rest
            log.error("model folder %s left out of the catalogue: %s", folder / version, error)
    return entries


def load_catalogue(models_dir: Path, builtin_dir: Path = BUILTIN_DIR) -> Catalogue:
    """The catalogue: the built-in models and those installed in `models_dir`, with the roles kept there."""
    roles = read_roles(models_dir)
    builtin = _builtin(roles, builtin_dir)
    installed = _installed(models_dir, roles, {e.name for e in builtin})
    singles = [e for e in builtin + installed if not e.is_ensemble]
    ensembles = [e for e in builtin + installed if e.is_ensemble]
    return Catalogue(tuple(singles + ensembles))


def catalogue_stamp(models_dir: Path, builtin_dir: Path = BUILTIN_DIR) -> tuple:
    """Changes whenever the catalogue may have: a worker compares it before each batch (worker.runtime)."""
    paths = [builtin_dir / "catalogue.json", models_dir / ROLES_FILE]
    if models_dir.is_dir():
        paths += sorted(models_dir.glob("*/*/card.json"))
    return tuple((str(p), p.stat().st_mtime_ns) for p in paths if p.exists())
