"""Server-rendered job history and live job pages, thumbnails and CSV export."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from web.dashboard import model_views, monitoring_views, site_views, views  # noqa: E402,F401  (registers the routes on bp)
