"""The web app: upload breast images, see the model's answer, its heatmap and its versions.

``webapp.cli.run_web`` (``breastdx web``) serves :func:`create_app` under gunicorn; tests
call it with a ``test_config``. Blueprints: ``ui`` (HTML pages) and ``api``
(``POST /api/predict``). The app talks to a model server through one
:class:`webapp.clients.PredictionClient`; it never imports TensorFlow and never resizes or
normalises an image for the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify, render_template, request, url_for
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException

from breastdx_core import contract, errors
from serving import settings  # TF-free defaults: the server's address and model
from webapp import audit, auth
from webapp.backends import make_client
from webapp.clients import PredictionError
from webapp.uploads import UploadError

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULTS = {
    "CLIENT": "rest",  # rest | grpc | vertex
    "SERVER_URL": settings.DEFAULT_SERVER_URL,  # one source with the server and `breastdx predict`
    "GRPC_TARGET": settings.DEFAULT_GRPC_TARGET,
    "MODEL_NAME": settings.DEFAULT_MODEL_NAME,
    "VERTEX_PROJECT": None,
    "VERTEX_MODEL": None,
    "VERTEX_VERSION": None,
    "REQUEST_TIMEOUT_S": 30.0,
    "MAX_CONTENT_LENGTH": 32 * MIB,  # the whole request
    "MAX_FILE_BYTES": 8 * MIB,  # one image
    "MAX_FILES": 32,
    "MAX_IMAGE_PIXELS": 4096 * 4096,  # declared width x height; far above a 500x500 ultrasound
    "SECRET_KEY": None,  # random per process unless configured (several workers need one key)
    "AUTH": "local",  # local (127.0.0.1 only) | iap (verify IAP's signed header) | open; webapp/auth.py
    "IAP_AUDIENCE": None,  # /projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID (AUTH=iap)
    "AUDIT_LOG": "-",  # one JSON line per prediction: "-" stdout, else a file path; webapp/audit.py
    "MAX_MAP_BYTES": 24 * MIB,  # one whole image to map (a 2,000x2,000 H&E PNG is ~8 MiB)
    "TILE_STRIDE": 0,  # pixels between tiles of a map; 0: the model's patch (no overlap); webapp/tiling.py
    "MAX_TILES": 4096,  # tissue tiles per map; more is a 413
    "TILE_BATCH": 256,  # tiles per :predict request
    "MAX_ZIP_BYTES": 24 * MIB,  # a patient's zip of IDC patches; webapp/mosaic.py
    "MAX_MOSAIC_PIXELS": 8000 * 8000,  # the slide the patches span
    # Finished maps and mosaics, for their bookmarkable pages (webapp/results_store.py):
    # None is <instance folder>/results; the oldest go past the count or the bytes.
    "RESULTS_DIR": None,
    "RESULTS_MAX_COUNT": 200,
    "RESULTS_MAX_BYTES": 512 * MIB,
    "ENV_PREFIX": "BREASTDX_WEB",  # BREASTDX_WEB_SERVER_URL, BREASTDX_WEB_SECRET_KEY...
}
API_PREFIX = "/api/"
NOT_ASSESSED_STATUS = 422  # an image the model must not answer about (webapp/tiling.py)
csrf = CSRFProtect()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask app.

    Settings come from :data:`DEFAULTS`, then ``BREASTDX_WEB_*`` environment variables
    (e.g. ``BREASTDX_WEB_SERVER_URL``, ``BREASTDX_WEB_SECRET_KEY``), then ``test_config``. A ``PREDICTION_CLIENT``
    entry (an object with ``predict``/``versions``) replaces the configured client.

    Args:
        test_config: settings that override everything else.
    """
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env(DEFAULTS["ENV_PREFIX"])
    if test_config:
        app.config.update(test_config)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = os.urandom(32)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    auth.init_app(app)  # refuses to start with incomplete sign-in settings
    audit.init_app(app)  # uploads in memory, audit sink
    app.extensions["prediction_client"] = app.config.get("PREDICTION_CLIENT") or make_client(
        app.config
    )
    csrf.init_app(app)

    from webapp import api, ui, viewer, wholeslide

    app.register_blueprint(ui.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(wholeslide.ui_bp)
    app.register_blueprint(wholeslide.api_bp)
    csrf.exempt(wholeslide.api_bp)
    csrf.exempt(api.bp)  # a JSON API for programs: no cookie session, nothing to forge
    viewer.init_app(app, csrf)  # slides from the SLIDES_DIR folder in a deep-zoom viewer
    _register_errors(app)

    @app.context_processor
    def research_only():
        return {"research_only": contract.RESEARCH_ONLY}

    return app


def _wants_json() -> bool:
    return (
        request.path.startswith(API_PREFIX) or request.accept_mimetypes.best == "application/json"
    )


# The page a person goes back to from an error, by the path that failed.
BACK_LINKS = (
    ("/map", "wholeslide.map_form", "Back to the whole-image page"),
    ("/mosaic", "wholeslide.mosaic_form", "Back to the mosaic form"),
    ("/versions", "ui.versions", "Back to the model versions"),
    ("/slides", "viewer.slides_page", "Back to the slides"),
)


def _back_link() -> tuple[str, str]:
    for prefix, endpoint, label in BACK_LINKS:
        if request.path == prefix or request.path.startswith(prefix + "/"):
            return url_for(endpoint), label
    return url_for("ui.index"), "Back to the upload page"


def _answer(message: str, status: int):
    if _wants_json():
        return jsonify({"error": message}), status
    back_url, back_label = _back_link()
    heading = "Not assessed" if status == NOT_ASSESSED_STATUS else None
    return render_template(
        "error.html",
        message=message,
        status=status,
        back_url=back_url,
        back_label=back_label,
        heading=heading,
    ), status


def _register_errors(app: Flask) -> None:
    @app.errorhandler(UploadError)
    def upload_error(err: UploadError):
        return _answer(err.message, err.status)

    @app.errorhandler(PredictionError)
    def prediction_error(err: PredictionError):
        log.warning("prediction failed: %s", err.message)
        return _answer(err.message, err.status)

    @app.errorhandler(errors.BreastdxError)
    def user_error(err: errors.BreastdxError):
        # Any user-fixable error the more specific handlers above do not name: its own
        # message and status (4xx for a client's mistake), never a 500.
        return _answer(getattr(err, "message", None) or str(err), err.http_status)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if err.code == 413:  # the whole request is past MAX_CONTENT_LENGTH: say how large, in words
            from webapp.uploads import human_bytes, limit_bytes

            sent = f" ({human_bytes(request.content_length)})" if request.content_length else ""
            limit = limit_bytes(app.config["MAX_CONTENT_LENGTH"])
            return _answer(
                f"the upload is too large{sent}; at most {limit} can be sent at once: "
                "send fewer or smaller files",
                413,
            )
        return _answer(f"{err.name}: {err.description}", err.code or 400)

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        # Logged with its trace for the operator; the person sees a message, never the trace.
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _answer("internal error; the operator's log has the details", 500)
