"""The drift page's plot, drawn by matplotlib as PNG (a `Figure` directly, never pyplot: safe in a threaded server).

Top: each figure's PSI per day against the reference, the PSI threshold dashed; a filled dot marks a day on which
the figure drifted (PSI and p both past their thresholds). Bottom: the images predicted per day.
"""

from __future__ import annotations

import io
from datetime import date

from models.drift import PSI_THRESHOLD


def draw_drift(report: dict) -> bytes:
    """A PNG of `drift_report`'s daily figures."""
    from matplotlib.dates import DateFormatter, date2num
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.2), dpi=100)
    psi_axes, count_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    daily = report["daily"]
    days = [date.fromisoformat(day["date"]) for day in daily]
    names = sorted({f["figure"] for day in daily for f in day["figures"]})
    for name in names:
        points = [(d, f) for d, day in zip(days, daily) for f in day["figures"] if f["figure"] == name]
        line = psi_axes.plot([d for d, _ in points], [f["psi"] for _, f in points], marker="o", mfc="none", lw=1.4)
        drifted = [(d, f["psi"]) for d, f in points if f["drift"]]
        if drifted:
            psi_axes.plot(*zip(*drifted), "o", color=line[0].get_color(), ms=7)
        line[0].set_label(name)
    psi_axes.axhline(PSI_THRESHOLD, ls="--", lw=1, color="#dc2626")
    psi_axes.text(
        0.005,
        PSI_THRESHOLD,
        f" PSI {PSI_THRESHOLD}",
        transform=psi_axes.get_yaxis_transform(),
        va="bottom",
        fontsize=8,
        color="#dc2626",
    )
    psi_axes.set_ylabel("PSI against the validation split")
    title = "Drift by day (filled dot: drift, PSI and p past their thresholds)" if daily else "No predicted images yet"
    psi_axes.set_title(title, fontsize=10)
    if names:
        psi_axes.legend(loc="upper left", fontsize=7, ncol=3)
    psi_axes.grid(alpha=0.3)
    count_axes.bar(days, [day["images"] for day in daily], width=0.8, color="#6b7280")
    count_axes.set_ylabel("images")
    count_axes.grid(alpha=0.3)
    first, last = date.fromisoformat(report["from"]), date.fromisoformat(report["to"])
    count_axes.set_xlim(date2num(first) - 0.6, date2num(last) + 0.6)  # the whole window, empty days too
    count_axes.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()
