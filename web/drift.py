"""Drift monitoring's report: daily summaries of what came in and went out, compared with the validation reference.

`drift_report` feeds `GET /api/v1/monitoring/drift` and the admin page; `DriftCollector` exports the last 24 hours'
figures on /metrics. The statistics and the reference are models/drift.py's; the rows are db/drift.py's.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from datetime import time as clock_time

import numpy as np
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.drift import ImageFacts, image_facts
from models.drift import EXPLANATIONS, MIN_IMAGES, ReferenceMissingError, compare, load_reference, thresholds
from models.prevalence import PriorShift

INPUT_MIXES = ("source", "format", "bit_depth", "size", "file_size", "view", "modality")
HISTOGRAM_EDGES = np.linspace(0.0, 1.0, 11)
METRICS_WINDOW = timedelta(hours=24)
METRICS_CACHE_SECONDS = 60.0
GAUGES = {
    "psi": ("radbatch_drift_psi", "Population stability index of each drift figure against the reference"),
    "p_value": ("radbatch_drift_p_value", "KS (distributions) or binomial (rates) p-value against it"),
    "value": ("radbatch_drift_value", "The figure's mean or rate over the last 24 hours"),
    "reference": ("radbatch_drift_reference_value", "The same figure on the validation split"),
    "drift": ("radbatch_drift_detected", "1 when PSI > 0.2 and p < 0.01 on 20 images or more (docs/monitoring.md)"),
}


def _members(reference: dict) -> list[str]:
    return list(reference["members"])


def _probability(fact: ImageFacts, model: str, reference: dict) -> float:
    """The stored probability at the prevalence the reference's are at (RADBATCH_PREVALENCE moves stored ones)."""
    p, stored_at = fact.probabilities[model], fact.prevalences.get(model)
    wanted = reference.get("prevalences", {}).get(model)
    if stored_at is None or wanted is None or stored_at == wanted:
        return p
    return float(PriorShift(trained=stored_at, target=wanted)(p))


def figures(facts: list[ImageFacts], reference: dict) -> tuple[dict[str, list[float]], dict[str, tuple[int, int]]]:
    """The observations of every figure: continuous ones as lists, rates as (hits, n)."""
    values: dict[str, list[float]] = {"pixel_mean": [], "pixel_std": []}
    for fact in facts:
        if fact.pixel_mean is not None and fact.pixel_std is not None:
            values["pixel_mean"].append(fact.pixel_mean)
            values["pixel_std"].append(fact.pixel_std)
    rates: dict[str, tuple[int, int]] = {}
    for model in reference["model_versions"]:
        predicted = [fact for fact in facts if model in fact.probabilities]
        values[f"probability:{model}"] = [_probability(fact, model, reference) for fact in predicted]
        rates[f"positive:{model}"] = (sum(fact.labels[model] == "disease" for fact in predicted), len(predicted))
    members = _members(reference)
    voted = [fact for fact in facts if all(m in fact.labels for m in members)]
    split = sum(len({fact.labels[m] for m in members}) > 1 for fact in voted)
    rates["disagreement"] = (split, len(voted))
    return values, rates


def _summary(day: str, facts: list[ImageFacts], reference: dict) -> dict:
    values, rates = figures(facts, reference)
    outputs = {
        model: {
            "positive_rate": _rate(*rates[f"positive:{model}"]),
            "histogram": np.histogram(values[f"probability:{model}"], HISTOGRAM_EDGES)[0].tolist(),
        }
        for model in reference["model_versions"]
    }
    comparisons = compare(reference, values, rates)
    return {
        "date": day,
        "images": len(facts),
        "inputs": {mix: dict(Counter(getattr(fact, mix) for fact in facts).most_common()) for mix in INPUT_MIXES},
        "pixels": {key: _mean(values[key]) for key in ("pixel_mean", "pixel_std")},
        "outputs": outputs,
        "disagreement_rate": _rate(*rates["disagreement"]),
        "figures": [c.to_dict() for c in comparisons],
        "drift": sorted(c.figure for c in comparisons if c.drift),
    }


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _reference_summary(reference: dict) -> dict:
    return {
        "split": reference["split"],
        "images": reference["n"],
        "created_at": reference["created_at"],
        "model_versions": reference["model_versions"],
        "means": {figure: round(float(np.mean(v["values"])), 4) for figure, v in reference["values"].items()},
        "rates": reference["rates"],
        "inputs": reference["inputs"],
    }


def drift_report(session: Session, days: int, job_id: int | None = None, now: datetime | None = None) -> dict:
    """The last `days` UTC days (today included), one summary per day with images, and the whole window compared
    with the reference; `job_id` narrows both to one job."""
    reference = load_reference()
    now = now or datetime.now(timezone.utc)
    first = now.date() - timedelta(days=days - 1)
    facts = image_facts(session, datetime.combine(first, clock_time(0), tzinfo=timezone.utc), job_id)
    by_day: dict[str, list[ImageFacts]] = {}
    for fact in facts:
        by_day.setdefault(fact.day.isoformat(), []).append(fact)
    window = _summary(f"{first.isoformat()}/{now.date().isoformat()}", facts, reference)
    return {
        "days": days,
        "from": first.isoformat(),
        "to": now.date().isoformat(),
        "job": job_id,
        "drift": window["drift"],
        "window": window,
        "daily": [_summary(day, found, reference) for day, found in sorted(by_day.items())],
        "reference": _reference_summary(reference),
        "thresholds": thresholds(),
        "explanations": EXPLANATIONS,
    }


class DriftCollector:
    """The last 24 hours' drift figures for Prometheus, computed at scrape time at most once a minute."""

    def __init__(self, app: Flask):
        self.sessions = app.extensions["radbatch_sessions"]
        self.lock = threading.Lock()
        self.cached: tuple[float, dict | None] = (0.0, None)

    def _window(self) -> tuple[dict, list[str]] | None:
        """The last 24 hours' summary and every figure the reference knows, or None without reference or database."""
        with self.lock:
            at, found = self.cached
            if time.monotonic() - at > METRICS_CACHE_SECONDS:
                try:
                    reference = load_reference()
                    with self.sessions() as session:
                        facts = image_facts(session, datetime.now(timezone.utc) - METRICS_WINDOW)
                    found = (_summary("last 24 hours", facts, reference), [*reference["values"], *reference["rates"]])
                except (SQLAlchemyError, ReferenceMissingError):
                    found = None
                self.cached = (time.monotonic(), found)
            return found

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        found = self._window()
        if found is None:
            return
        window, names = found
        images = GaugeMetricFamily("radbatch_drift_images", "Images predicted in the last 24 hours (drift window)")
        images.add_metric([], window["images"])
        yield images
        # /metrics needs no login: below MIN_IMAGES every figure reads NaN (not drifting), since a mean over a
        # handful of images would show those patients' results
        figures = {f["figure"]: f for f in window["figures"]} if window["images"] >= MIN_IMAGES else {}
        for key, (name, text) in GAUGES.items():
            gauge = GaugeMetricFamily(name, text, labels=["figure"])
            for figure in names:
                stated = figures.get(figure)
                gauge.add_metric([figure], float(stated[key]) if stated else (0.0 if key == "drift" else math.nan))
            yield gauge


def drift_collector(app: Flask) -> DriftCollector:
    """The app's one collector (its cache lives as long as the app)."""
    return app.extensions.setdefault("radbatch_drift_collector", DriftCollector(app))
