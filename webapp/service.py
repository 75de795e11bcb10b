"""What both blueprints do with an upload: check the files, ask the model, shape the answer.

``webapp.ui`` (HTML pages) and ``webapp.api`` (``POST /api/predict``) call
:func:`collect_uploads` and :func:`predict_uploads`, so the page and the JSON API report
the same facts: the model card's decision (breastdx_core/decision.py: "not assessed: <reason>",
the conformal set, "uncertain: refer to a pathologist" or the class), the probabilities,
model name and version, and the Grad-CAM overlay. The decision is the model server's
where it sends one (serving.server's ``decisions``), else the same rule applied here to the
same card: the page, the JSON API, ``breastdx predict`` and the server agree.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from flask import current_app
from werkzeug.datastructures import FileStorage

from breastdx_core import contract, decision
from webapp import overlay
from webapp.clients import Prediction, PredictionClient, PredictionError
from webapp.uploads import Upload, UploadError, check_upload

log = logging.getLogger(__name__)

PROBABILITY_DIGITS = 4


def client() -> PredictionClient:
    return current_app.extensions["prediction_client"]


def collect_uploads(files: List[FileStorage]) -> List[Upload]:
    """The request's files, each checked by content.

    Raises:
        UploadError: no file, too many files, or a refused file.
    """
    files = [f for f in files if f is not None and (f.filename or f.content_length)]
    config = current_app.config
    if not files:
        raise UploadError("no file uploaded; send one or more images in the form field \"file\"")
    if len(files) > config["MAX_FILES"]:
        raise UploadError(f"{len(files)} files uploaded; at most {config['MAX_FILES']} per request")
    uploads = []
    for index, storage in enumerate(files):
        # Read one byte past the limit: enough to refuse, never the whole of a huge file.
        data = storage.stream.read(config["MAX_FILE_BYTES"] + 1)
        uploads.append(check_upload(storage.filename, data, index, config["MAX_FILE_BYTES"],
                                    config["MAX_IMAGE_PIXELS"]))
    return uploads


def card_for(version: Optional[str]) -> Dict[str, Any]:
    """The model card of a version when the client can fetch one, else ``{}``."""
    fetch = getattr(client(), "card", None)
    if fetch is None or version is None:
        return {}
    try:
        return fetch(version)
    except PredictionError as err:
        log.warning("no model card for version %s: %s", version, err.message)
        return {}


def describe(upload: Upload, prediction: Prediction, card: Dict[str, Any], with_overlay: bool) -> Dict[str, Any]:
    """One image's result as a dict (the JSON API's item; the page renders the same).

    ``class_name`` is the decision's class: None when the image is not assessed or the
    answer is uncertain (``decision.text`` says which and why)."""
    ruled = prediction.decision or decision.assess(card, upload.data, prediction.probabilities,
                                                   prediction.ood_score)
    class_names = card.get("class_names") or [str(i) for i in range(len(prediction.probabilities))]
    assessed = ruled["status"] != decision.STATUS_NOT_ASSESSED
    called = ruled.get("class_name")
    result = {
        "file": upload.name,
        "status": ruled["status"],
        "decision": ruled,
        "class_name": called,
        "prediction_set": ruled.get("prediction_set", []),
        "probability": (round(prediction.probabilities[class_names.index(called)], PROBABILITY_DIGITS)
                        if called in class_names else None),
        "positive_class": card.get("positive_class"),
        "positive_probability": round(prediction.positive_probability, PROBABILITY_DIGITS) if assessed else None,
        "probabilities": ({name: round(p, PROBABILITY_DIGITS) for name, p in zip(class_names, prediction.probabilities)}
                          if assessed else {}),
        "uncertain": ruled["status"] == decision.STATUS_UNCERTAIN,
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "heatmap": prediction.heatmap if assessed else None,
        "research_only": contract.RESEARCH_ONLY,
    }
    if with_overlay:
        png = (overlay.overlay_png(upload.data, result["heatmap"]) if result["heatmap"]
               else overlay.original_png(upload.data))
        result["overlay_png"] = overlay.data_uri(png)
    return result


def predict_uploads(uploads: List[Upload], version: Optional[str], with_overlay: bool) -> List[Dict[str, Any]]:
    """Asks the model about every upload in one request.

    Raises:
        PredictionError: from the client.
    """
    predictions = client().predict([u.data for u in uploads], version=version, explain=True)
    card = card_for(predictions[0].model_version) if predictions else {}
    return [describe(u, p, card, with_overlay) for u, p in zip(uploads, predictions)]
