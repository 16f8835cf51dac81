"""The OpenAPI 3.1 description of /api/v1 and /dicomweb, kept beside the code (`openapi.yaml`) and served as JSON.

tests/test_openapi.py fails when a route under those prefixes is missing from it, validates it with
openapi-spec-validator, and runs schemathesis against a live server with it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from flask import jsonify

from web.api import bp

DESCRIPTION = Path(__file__).with_name("openapi.yaml")


@functools.cache
def description() -> dict:
    return yaml.safe_load(DESCRIPTION.read_text())


@bp.get("/openapi.json")
def openapi():
    return jsonify(description())
