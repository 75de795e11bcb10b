"""The JSON API blueprint: ``POST /api/predict`` and ``GET /api/versions``.

Registered by ``webapp.create_app``; ``bench/serve.py`` and scripts call it. Errors are
``{"error": "..."}`` with a 4xx status for the client's mistakes (see ``webapp.uploads``)
and 502/503/504 when the model server fails.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from breastdx_core import contract, model_card
from webapp import audit, kinds, service

bp = Blueprint("api", __name__, url_prefix="/api")
TRUE_VALUES = ("1", "true", "yes")


@bp.post("/predict")
def predict():
    """Multipart field ``file`` (one or more); optional ``version`` and ``overlay=1``. A file
    that is refused is listed under ``refused`` with its reason; the rest are answered (a
    4xx only when every file is refused)."""
    uploads, refusals = service.collect_batch(request.files.getlist("file"))
    service.require_some(uploads, refusals)
    version = (request.values.get("version") or "").strip() or None
    if version is not None and not version.isdigit():
        return jsonify({"error": f"version must be an integer, got {version[:40]!r}"}), 400
    with_overlay = request.values.get("overlay", "").lower() in TRUE_VALUES
    kind, results = kinds.predict_any(
        uploads, version, with_overlay
    )  # classifier, segmentation, whole image
    audit.record([u.data for u in uploads], results, "api")
    body = {"predictions": results, "kind": kind, "research_only": contract.RESEARCH_ONLY}
    if refusals:  # the other files were answered; each refused one says why
        body["refused"] = [r.as_dict() for r in refusals]
    return jsonify(body)


@bp.get("/versions")
def versions():
    """The served versions with their cards' evaluation metrics."""
    rows = service.client().versions()
    return jsonify(
        {
            "model_name": service.client().model_name,
            "versions": [
                {
                    "version": v.version,
                    "state": v.state,
                    "metrics": {m["key"]: m["value"] for m in model_card.headline_metrics(v.card)},
                    "decision_rule": model_card.decision_rule(v.card),
                }
                for v in rows
            ],
        }
    )
