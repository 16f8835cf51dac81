"""DICOMweb under /dicomweb: STOW-RS (store instances), with the same authentication as the REST API."""

from flask import Blueprint

from web.auth.identity import api_user

bp = Blueprint("dicomweb", __name__, url_prefix="/dicomweb")


@bp.before_request
def authenticate() -> None:
    api_user()


from web.dicomweb import stow  # noqa: E402,F401  (registers routes)
