"""What the web app keeps of a patient's image: one audit line per prediction, never the image.

``webapp.create_app`` calls :func:`init_app` (the audit sink and the in-memory request
class); ``webapp.api`` and ``webapp.ui`` call :func:`record` after each answered request.
Each prediction becomes one JSON line: time (UTC), user (``webapp.auth.current_user``),
route, model, version, class, probability and the image's SHA-256, which identifies the
image for a later inquiry without storing it. The sink is the ``AUDIT_LOG`` setting
(``BREASTDX_WEB_AUDIT_LOG``): ``-`` (default) is stdout, where the cluster's log agent
collects it; anything else is a file path (append).

Uploads stay in memory: Werkzeug spools a multipart file above 500 KB to a temporary
file; :class:`MemoryOnlyRequest` keeps it in a ``BytesIO`` (``MAX_CONTENT_LENGTH`` bounds
the memory), so no image is ever written to the pod's disk.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import sys
from collections.abc import Sequence
from typing import IO, Any

from flask import Flask, Request, current_app

from webapp import auth

AUDIT_LOGGER = "breastdx.audit"
STDOUT = "-"


class MemoryOnlyRequest(Request):
    """Flask's request, with uploaded files kept in memory instead of temporary files."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def init_app(app: Flask) -> None:
    """Uploads in memory; the audit logger writing JSON lines to ``AUDIT_LOG``."""
    app.request_class = MemoryOnlyRequest
    target = app.config.get("AUDIT_LOG") or STDOUT
    handler = (
        logging.StreamHandler(sys.stdout)
        if target == STDOUT
        else logging.FileHandler(target, encoding="utf-8")
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"{AUDIT_LOGGER}.{id(app)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False  # one line per prediction in the sink, not again in the app's log
    app.extensions["audit_logger"] = logger


def entry(
    image: bytes,
    result: dict[str, Any],
    user: str,
    route: str,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The audit record of one prediction (``result`` as ``webapp.service.describe`` makes it)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return {
        "time": now.isoformat(timespec="milliseconds"),
        "event": "prediction",
        "user": user,
        "route": route,
        "model": result.get("model_name"),
        "version": result.get("model_version"),
        "class": result.get("class_name"),
        "probability": result.get("probability"),
        "image_sha256": hashlib.sha256(image).hexdigest(),
    }


def record(images: Sequence[bytes], results: list[dict[str, Any]], route: str) -> None:
    """Writes one line per answered image of this request."""
    logger = current_app.extensions["audit_logger"]
    user = auth.current_user()
    for image, result in zip(images, results):
        logger.info(json.dumps(entry(image, result, user, route), sort_keys=True))
