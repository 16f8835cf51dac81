"""Promote and demote catalogue models (models/catalogue.py), every change kept in the catalogue's history.

    python -m models.roles list
    python -m models.roles promote NAME [--version V] --confirm NAME    # serve it (rolling back: an older V)
    python -m models.roles demote NAME [--to shadow|off]

A role is kept in `$RADBATCH_HOME/models/roles.json`; every change is appended to
`$RADBATCH_HOME/models/history.jsonl` (when, who, from what to what, which version). The web app's comparison page
calls the same `change_role` and also writes its audit log. Workers load the catalogue again before their next batch
(worker.runtime); the web app reads it on every request.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from models.catalogue import ROLES, CatalogueError, installed_versions, load_catalogue, read_roles, write_roles

HISTORY_FILE = "history.jsonl"


def change_role(models_dir: Path, name: str, role: str, who: str, version: str | None = None) -> dict:
    """Set `name`'s role (and, for an installed model, its active version); refuse (CatalogueError) a change that
    would leave the catalogue unable to serve. Returns the history record."""
    if role not in ROLES:
        raise CatalogueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    before = load_catalogue(models_dir)
    old = before.entry(name)
    previous = read_roles(models_dir)
    roles = {key: dict(value) for key, value in previous.items()}
    state = dict(roles.get(name, {}), role=role)
    if version is not None:
        if version not in installed_versions(models_dir, name):
            raise CatalogueError(f"model {name!r} has no installed version {version!r}")
        state["version"] = version
    roles[name] = state
    write_roles(models_dir, roles)
    try:
        after = load_catalogue(models_dir)
        after.check()
    except CatalogueError:
        write_roles(models_dir, previous)  # as it was: the catalogue must always be able to serve
        raise
    record = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "who": who,
        "model": name,
        "from_role": old.role,
        "to_role": role,
        "from_version": old.version,
        "to_version": after.entry(name).version,
    }
    with (models_dir / HISTORY_FILE).open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def history(models_dir: Path, name: str | None = None) -> list[dict]:
    """Every role change, oldest first (of one model with `name`)."""
    path = models_dir / HISTORY_FILE
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if name is None or r["model"] == name]


def main(argv: list[str] | None = None) -> int:
    from settings import Settings

    parser = argparse.ArgumentParser(prog="python -m models.roles", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the catalogue, with each model's role and version")
    promote = sub.add_parser("promote", help="serve a model (an admin's step: --confirm NAME)")
    promote.add_argument("name")
    promote.add_argument("--version", help="an installed version to serve (rolling back is promoting an older one)")
    promote.add_argument("--confirm", default="", help="the model's name again: confirms that an admin serves it")
    demote = sub.add_parser("demote", help="stop serving a model")
    demote.add_argument("name")
    demote.add_argument("--to", choices=("shadow", "off"), default="shadow")
    args = parser.parse_args(argv)
    models_dir = Settings.from_env().models_dir
    try:
        if args.command == "list":
            for entry in load_catalogue(models_dir).entries:
                print(f"{entry.name:<12} {entry.role:<7} {entry.version}")
            return 0
        if args.command == "promote":
            if args.confirm != args.name:
                print(f"refused: serving {args.name!r} shows its results to every user; add --confirm {args.name}")
                return 2
            record = change_role(models_dir, args.name, "served", getpass.getuser(), args.version)
        else:
            record = change_role(models_dir, args.name, args.to, getpass.getuser())
    except CatalogueError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 2
    print(f"{record['model']}: {record['from_role']} -> {record['to_role']} ({record['to_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
