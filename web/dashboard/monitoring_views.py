"""The administrators' drift monitoring page: the figures against the validation reference, their plot and the
daily input and output summaries (the numbers are web/drift.py's, the plot the API's PNG)."""

from __future__ import annotations

from flask import render_template

from web.api.monitoring import audited_report
from web.auth.identity import current_user, login_required
from web.dashboard import bp


@bp.get("/admin/drift")
@login_required
def drift_page():
    report = audited_report(current_user())
    return render_template("dashboard/drift.html", report=report)
