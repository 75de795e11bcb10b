"""What both blueprints do with an upload: check the files, ask the model, shape the answer.

``webapp.ui`` (HTML pages) and ``webapp.api`` (``POST /api/predict``) call
:func:`collect_uploads` and :func:`predict_uploads`, so the page and the JSON API report
the same facts: class, probability, model name and version, the uncertainty band and the
Grad-CAM overlay.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from flask import current_app
from werkzeug.datastructures import FileStorage

from pipeline import contract
from webapp import overlay
from webapp.clients import Prediction, PredictionClient, PredictionError
from webapp.uploads import Upload, UploadError, check_upload

log = logging.getLogger(__name__)

UNCERTAINTY_CARD_KEY = "uncertainty_band"  # optional in a model card: {"low": .., "high": ..}
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


def uncertainty_band(card: Dict[str, Any]) -> Tuple[float, float]:
    """(low, high) positive probabilities between which a result is "uncertain".

    The model card's ``uncertainty_band`` wins over the app's ``UNCERTAIN_LOW``/``UNCERTAIN_HIGH``.
    """
    band = card.get(UNCERTAINTY_CARD_KEY) if isinstance(card, dict) else None
    if isinstance(band, dict) and "low" in band and "high" in band:
        return float(band["low"]), float(band["high"])
    return float(current_app.config["UNCERTAIN_LOW"]), float(current_app.config["UNCERTAIN_HIGH"])


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
    """One image's result as a dict (the JSON API's item; the page renders the same)."""
    low, high = uncertainty_band(card)
    class_names = card.get("class_names") or [str(i) for i in range(len(prediction.probabilities))]
    result = {
        "file": upload.name,
        "class_name": prediction.class_name,
        "probability": round(prediction.probability, PROBABILITY_DIGITS),
        "positive_class": card.get("positive_class"),
        "positive_probability": round(prediction.positive_probability, PROBABILITY_DIGITS),
        "probabilities": {name: round(p, PROBABILITY_DIGITS) for name, p in zip(class_names, prediction.probabilities)},
        "uncertain": low <= prediction.positive_probability <= high,
        "uncertainty_band": [low, high],
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "heatmap": prediction.heatmap,
        "research_only": contract.RESEARCH_ONLY,
    }
    if with_overlay:
        png = (overlay.overlay_png(upload.data, prediction.heatmap) if prediction.heatmap
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
