"""Install a site's own classifier: `python -m models.install FILE.onnx --card CARD.json` (or a folder holding
`model.onnx` and `card.json`).

The model is checked before anything is written, and refused with the reason when a check fails:
  * the card: a name and a version (letters, digits, `.`, `_`, `-`), input size and channels (1 or 3), output kind
    (`probability` or `logit`), a threshold and the prevalence its probabilities reflect, both in (0, 1), a licence
    and an intended use; the name must not be a built-in model's;
  * the file's input is (batch, size, size, channels) and its disease output (batch, 1) or (batch,), as the card says;
  * it runs on the sample images (models/samples, or --samples) through the worker's own preprocessing and runtime
    (ONNX Runtime), and its outputs are finite, not all equal, and probabilities in [0, 1] or logits as the card says.
It is then copied, with its card, to `$RADBATCH_HOME/models/<name>/<version>/` as a `shadow` model (models/roles.py
history records it): it runs on every image from the workers' next batch and is shown to admins only.
`--role served` serves it at once; that is an admin's decision, confirmed by `--confirm <name>`.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from models.catalogue import OUTPUT_KINDS, CatalogueError, entry_from_card, load_catalogue
from models.preprocess import load_and_preprocess
from models.roles import change_role
from models.runtime import onnx_runner

SAMPLES = Path(__file__).resolve().parent / "samples"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


class InstallError(ValueError):
    pass


def check_card(card: dict) -> dict:
    name, version = str(card.get("name", "")), str(card.get("version", ""))
    if not NAME.match(name):
        raise InstallError(f"card: name {name!r} must be 1-32 lower-case letters, digits, '.', '_' or '-'")
    if not VERSION.match(version):
        raise InstallError(f"card: version {version!r} must be 1-64 letters, digits, '.', '_', '+' or '-'")
    size = card.get("input", {})
    if not isinstance(size.get("size"), int) or not 16 <= size["size"] <= 1024:
        raise InstallError("card: input.size must be a whole number of pixels from 16 to 1024")
    if size.get("channels") not in (1, 3):
        raise InstallError("card: input.channels must be 1 or 3")
    kind = (card.get("output") or {}).get("kind")
    if kind not in OUTPUT_KINDS:
        raise InstallError(f"card: output.kind must be {' or '.join(OUTPUT_KINDS)}, as the model's output holds")
    threshold = card.get("threshold")
    if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise InstallError("card: threshold must be a probability strictly between 0 and 1")
    prevalence = card.get("prevalence")
    if not isinstance(prevalence, (int, float)) or not 0 < prevalence < 1:
        raise InstallError("card: prevalence (the disease rate its probabilities reflect) must be strictly in (0, 1)")
    for field in ("licence", "intended_use"):
        if not str(card.get(field, "")).strip():
            raise InstallError(f"card: {field} must say what it is (a model is served only with both)")
    return card


def _dims(shape: list) -> list:
    return [d if isinstance(d, int) else None for d in shape]


def check_shapes(runner_session, card: dict) -> str:
    """The disease output's name, once input and output shapes match the card."""
    size, channels = card["input"]["size"], card["input"]["channels"]
    inputs = runner_session.get_inputs()
    if len(inputs) != 1:
        raise InstallError(f"the model has {len(inputs)} inputs; radbatch gives it one, (batch, size, size, channels)")
    got = _dims(inputs[0].shape)
    if len(got) != 4 or got[1:] != [size, size, channels]:
        wanted = f"(batch, {size}, {size}, {channels})"
        raise InstallError(f"input shape {inputs[0].shape} does not match the card's {wanted}")
    outputs = {o.name: _dims(o.shape) for o in runner_session.get_outputs()}
    wanted = (card.get("output") or {}).get("name") or next(iter(outputs))
    if wanted not in outputs:
        raise InstallError(f"the card's output {wanted!r} is not among the model's outputs {sorted(outputs)}")
    if outputs[wanted][1:] not in ([], [1]):
        raise InstallError(f"output {wanted!r} has shape {outputs[wanted]}; one disease score per image, (batch, 1)")
    return wanted


def check_outputs(values: np.ndarray, kind: str) -> None:
    if not np.all(np.isfinite(values)):
        raise InstallError("the model gives NaN or infinite outputs on the sample images")
    if np.ptp(values) == 0:
        raise InstallError(f"the model gives the same output ({values[0]:.4g}) for every sample image")
    inside = bool(np.all((values >= 0) & (values <= 1)))
    if kind == "probability" and not inside:
        raise InstallError(
            f"the card says probabilities but outputs range {values.min():.3g}..{values.max():.3g}: "
            "if they are logits, say output.kind: logit"
        )
    if kind == "logit" and inside:
        raise InstallError(
            "the card says logits but every output is within [0, 1]: if they are probabilities, "
            "say output.kind: probability"
        )


def check_model(model: Path, card: dict, samples: Path = SAMPLES) -> np.ndarray:
    """Run every check; the sample images' disease outputs (raw, as the model gives them)."""
    check_card(card)
    try:
        runner = onnx_runner(model, threads=1)
    except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own types for a file it cannot load
        raise InstallError(f"ONNX Runtime cannot load {model}: {error}") from None
    output = check_shapes(runner.session, card)
    files = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    if len(files) < 2:
        raise InstallError(f"{samples} needs at least two sample images")
    size, channels = card["input"]["size"], card["input"]["channels"]
    batch = np.stack([load_and_preprocess(path, size=size, channels=channels) for path in files])
    try:
        values = runner(batch)[output].reshape(-1)
    except Exception as error:  # noqa: BLE001
        raise InstallError(f"the model fails on the sample images: {type(error).__name__}: {error}") from None
    if len(values) != len(files):
        raise InstallError(f"{len(files)} images gave {len(values)} outputs; one per image is needed")
    check_outputs(values, card["output"]["kind"])
    return values


def install(model: Path, card: dict, models_dir: Path, samples: Path = SAMPLES) -> Path:
    """Check and copy; the folder it was installed to. The new version's role is set by the caller."""
    name, version = check_card(card)["name"], card["version"]
    if name in {e.name for e in load_catalogue(models_dir).entries if e.folder.parent != models_dir / name}:
        raise InstallError(f"{name!r} is a built-in model's name; choose another")
    values = check_model(model, card, samples)
    target = models_dir / name / version
    if target.exists():
        raise InstallError(f"{name} {version} is already installed at {target}; give the new one another version")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    stored = {**card, "runtime": "onnx", "file": "model.onnx", "sha256": digest}
    stored["install_check"] = {"samples": len(values), "min": float(values.min()), "max": float(values.max())}
    entry_from_card({}, stored, target, "off")  # the catalogue can read it
    target.mkdir(parents=True)
    shutil.copyfile(model, target / "model.onnx")
    (target / "card.json").write_text(json.dumps(stored, indent=2) + "\n")
    return target


def _sources(path: Path, card: Path | None) -> tuple[Path, dict]:
    if path.is_dir():
        path, card = path / "model.onnx", card or path / "card.json"
    if card is None:
        raise InstallError("give the model's card: --card CARD.json")
    if not path.is_file():
        raise InstallError(f"no model file at {path}")
    try:
        return path, json.loads(card.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InstallError(f"cannot read the card {card}: {error}") from None


def _served_version(models_dir: Path, name: object) -> str | None:
    """The version of an installed model of that name being served now, if any (a new version does not replace it
    until an admin promotes it)."""
    found = [e for e in load_catalogue(models_dir).entries if e.name == name and e.runtime == "onnx"]
    return found[0].version if found and found[0].role == "served" else None


def main(argv: list[str] | None = None) -> int:
    from settings import Settings

    parser = argparse.ArgumentParser(prog="python -m models.install", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="FILE.onnx, or a folder with model.onnx and card.json")
    parser.add_argument("--card", type=Path, help="the model's card (JSON)")
    parser.add_argument("--role", choices=("shadow", "served", "off"), default="shadow")
    parser.add_argument("--confirm", default="", help="with --role served: the model's name, an admin's confirmation")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="images to try it on (default: models/samples)")
    args = parser.parse_args(argv)
    models_dir = Settings.from_env().models_dir
    try:
        model, card = _sources(args.model, args.card)
        if args.role == "served" and args.confirm != card.get("name"):
            name = card.get("name")
            raise InstallError(f"serving shows its results to every user: an admin confirms with --confirm {name}")
        served = _served_version(models_dir, card.get("name"))
        target = install(model, card, models_dir, args.samples)
        if served and args.role != "served":
            print(
                f"installed {card['version']} at {target}; {card['name']} {served} stays served until you promote it:"
            )
            print(f"python -m models.roles promote {card['name']} --version {card['version']} --confirm {card['name']}")
            return 0
        record = change_role(models_dir, card["name"], args.role, getpass.getuser(), card["version"])
    except (InstallError, CatalogueError) as error:
        print(f"refused: {error}", file=sys.stderr)
        return 2
    print(f"installed {card['name']} {card['version']} at {target} as {record['to_role']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
