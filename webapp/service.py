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

import dataclasses
import logging
import os
from typing import Any

from flask import current_app
from werkzeug.datastructures import FileStorage

from breastdx_core import contract, decision
from webapp import answers, overlay
from webapp.clients import Prediction, PredictionClient, PredictionError
from webapp.uploads import Upload, UploadError, check_upload, display_name, too_large

log = logging.getLogger(__name__)

PROBABILITY_DIGITS = 4


def client() -> PredictionClient:
    return current_app.extensions["prediction_client"]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A file of a batch that was refused: its name, the message and the HTTP status it
    would have on its own; the rest of the batch is still answered."""

    index: int
    name: str
    message: str
    status: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "index": self.index,
            "status": "refused",
            "error": self.message,
            "http_status": self.status,
        }


def stream_size(storage: FileStorage) -> int | None:
    """The uploaded file's real size in bytes (werkzeug has it spooled), or None."""
    stream = storage.stream
    try:
        here = stream.tell()
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(here)
        return size
    except (AttributeError, OSError, ValueError):
        return None


def read_upload(storage: FileStorage, index: int, max_bytes: int, max_pixels: int) -> Upload:
    """One form file, checked by content; TIFF and WebP come back as lossless PNG.

    Raises:
        UploadError: the file is refused (the message names its real size where too large).
    """
    size = stream_size(storage)
    if size is not None and size > max_bytes:
        raise too_large(display_name(storage.filename, index), size, max_bytes)
    # Read one byte past the limit: enough to refuse, never the whole of a huge file.
    data = storage.stream.read(max_bytes + 1)
    return check_upload(
        storage.filename, data, index, max_bytes, max_pixels, size=size, convert=True
    )


def collect_batch(files: list[FileStorage]) -> tuple[list[Upload], list[Refusal]]:
    """The request's files, each checked by content: (accepted, refused). A bad file is
    refused on its own; the others are still answered.

    Raises:
        UploadError: no file, or too many files (the whole request is refused).
    """
    files = [f for f in files if f is not None and (f.filename or f.content_length)]
    config = current_app.config
    if not files:
        raise UploadError("no file uploaded; choose one or more images")
    if len(files) > config["MAX_FILES"]:
        raise UploadError(f"{len(files)} files uploaded; at most {config['MAX_FILES']} per request")
    uploads, refusals = [], []
    for index, storage in enumerate(files):
        try:
            uploads.append(
                read_upload(storage, index, config["MAX_FILE_BYTES"], config["MAX_IMAGE_PIXELS"])
            )
        except UploadError as err:
            refusals.append(
                Refusal(index, _safe_name(storage.filename, index), err.message, err.status)
            )
    return uploads, refusals


def _safe_name(raw: str | None, index: int) -> str:
    try:
        return display_name(raw, index)
    except UploadError:
        return f"file {index + 1}"


def collect_uploads(files: list[FileStorage]) -> list[Upload]:
    """The request's files, each checked by content; the first refusal is raised.

    Raises:
        UploadError: no file, too many files, or a refused file.
    """
    uploads, refusals = collect_batch(files)
    if refusals:
        raise UploadError(refusals[0].message, refusals[0].status)
    return uploads


def require_some(uploads: list[Upload], refusals: list[Refusal]) -> None:
    """UploadError when every file of the batch was refused (one file: its own message)."""
    if uploads:
        return
    if len(refusals) == 1:
        raise UploadError(refusals[0].message, refusals[0].status)
    raise UploadError(
        f"none of the {len(refusals)} files could be read: "
        + "; ".join(r.message for r in refusals),
        max(r.status for r in refusals),
    )


def card_for(version: str | None) -> dict[str, Any]:
    """The model card of a version when the client can fetch one, else ``{}``."""
    fetch = getattr(client(), "card", None)
    if fetch is None or version is None:
        return {}
    try:
        return fetch(version)
    except PredictionError as err:
        log.warning("no model card for version %s: %s", version, err.message)
        return {}


def describe(
    upload: Upload, prediction: Prediction, card: dict[str, Any], with_overlay: bool
) -> dict[str, Any]:
    """One image's result as a dict (the JSON API's item; the page renders the same).

    ``class_name`` is the decision's class: None when the image is not assessed or the
    answer is uncertain (``decision.text`` says which and why)."""
    ruled = prediction.decision or decision.assess(
        card, upload.data, prediction.probabilities, prediction.ood_score
    )
    class_names = card.get("class_names") or [str(i) for i in range(len(prediction.probabilities))]
    assessed = ruled["status"] != decision.STATUS_NOT_ASSESSED
    called = ruled.get("class_name")
    result = {
        "file": upload.name,
        "status": ruled["status"],
        "decision": ruled,
        "class_name": called,
        "prediction_set": ruled.get("prediction_set", []),
        "probability": (
            round(prediction.probabilities[class_names.index(called)], PROBABILITY_DIGITS)
            if called in class_names
            else None
        ),
        "positive_class": card.get("positive_class"),
        "positive_probability": round(prediction.positive_probability, PROBABILITY_DIGITS)
        if assessed
        else None,
        "probabilities": (
            {
                name: round(p, PROBABILITY_DIGITS)
                for name, p in zip(class_names, prediction.probabilities)
            }
            if assessed
            else {}
        ),
        "uncertain": ruled["status"] == decision.STATUS_UNCERTAIN,
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "heatmap": prediction.heatmap if assessed else None,
        "research_only": contract.RESEARCH_ONLY,
        "source_format": upload.source_format,
    }
    result["answer"] = answers.sentence(result, card)
    if with_overlay:
        result["original_png"] = overlay.data_uri(overlay.original_png(upload.data))
        result["overlay_png"] = result["original_png"]
        if result["heatmap"]:
            top = max(
                range(len(prediction.probabilities)), key=lambda i: prediction.probabilities[i]
            )
            toward = class_names[top] if top < len(class_names) else None
            result["overlay_png"] = overlay.data_uri(
                overlay.evidence_png(
                    upload.data,
                    result["heatmap"],
                    prediction.probabilities[top],
                    toward_positive=toward is not None and toward == card.get("positive_class"),
                )
            )
            result["overlay_scale"] = {
                "toward": toward,
                "weight": round(prediction.probabilities[top], 4),
            }
    return result


def predict_uploads(
    uploads: list[Upload], version: str | None, with_overlay: bool
) -> list[dict[str, Any]]:
    """Asks the model about every upload in one request.

    Raises:
        PredictionError: from the client.
    """
    predictions = client().predict([u.data for u in uploads], version=version, explain=True)
    card = card_for(predictions[0].model_version) if predictions else {}
    return [describe(u, p, card, with_overlay) for u, p in zip(uploads, predictions)]
