"""The upload portal: pick files or whole folders; the page's script sends them to the API in chunks."""

from flask import Blueprint

bp = Blueprint("upload", __name__)

from web.upload import views  # noqa: E402,F401  (registers the routes on bp)
