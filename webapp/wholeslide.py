"""Whole images and whole slides in the web app: the probability map and the patient mosaic.

``webapp.create_app`` registers the two blueprints: ``ui_bp`` (``GET/POST /map``,
``POST /mosaic``: HTML pages) and ``api_bp`` (``POST /api/map``, ``POST /api/mosaic``:
JSON with the grid). ``webapp.tiling`` cuts and maps a large image; ``webapp.mosaic``
reads a zip of a patient's IDC patches; both send tiles to the model server through the
app's one prediction client, so the model's graph does all preprocessing.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from flask import Blueprint, current_app, jsonify, render_template, request

from breastdx_core import contract
from webapp import audit, kinds, mosaic, overlay, service, tiling
from webapp.uploads import HTTP_TOO_LARGE, UploadError, check_upload

ui_bp = Blueprint("wholeslide", __name__)
api_bp = Blueprint("wholeslide_api", __name__, url_prefix="/api")
DEFAULT_THRESHOLD = 0.5  # positive when P(positive) >= this, where neither server nor card decides


def _version() -> Optional[str]:
    version = (request.values.get("version") or "").strip() or None
    if version is not None and not version.isdigit():
        raise UploadError(f"version must be an integer, got {version[:40]!r}")
    return version


def model_patch(card: Dict[str, Any]) -> int:
    """The side of the image patch the model was trained on: the task's native patch (IDC
    50) or its model size; IDC's where the card names no task."""
    try:
        spec = contract.get_task(card.get("task") or "idc").image
    except ValueError:
        spec = contract.get_task("idc").image
    return int((spec.native_size or spec.model_size)[0])


def card_threshold(card: Dict[str, Any]) -> float:
    """The card's decision threshold on P(positive) where it holds one, else 0.5."""
    for holder in (card.get("decision_rule"), card.get("evaluation_report"), card):
        if isinstance(holder, dict):
            for key in ("threshold", "operating_threshold"):
                if isinstance(holder.get(key), (int, float)):
                    return float(holder[key])
    return DEFAULT_THRESHOLD


def _settings(patch: int) -> tiling.TileSettings:
    config = current_app.config
    raw = (request.values.get("stride") or "").strip()
    if raw and not raw.isdigit():
        raise UploadError(f"stride must be a whole number of pixels, got {raw[:40]!r}")
    try:
        return tiling.TileSettings(patch=patch, stride=int(raw) if raw else int(config["TILE_STRIDE"] or patch),
                                   max_tiles=int(config["MAX_TILES"]), batch=int(config["TILE_BATCH"]))
    except tiling.TilingError as err:
        raise UploadError(err.message, err.status) from None


def _predictor(version: Optional[str]) -> Tuple[Callable[[List[bytes]], list], Optional[str], Dict[str, Any]]:
    """A function that classifies a batch of encoded tiles with one fixed version, and its card."""
    client = service.client()
    if version is None and hasattr(client, "newest_version"):
        version = client.newest_version()  # every batch of one map goes to the same version
    card = service.card_for(version)
    if kinds.kind_of(card) != kinds.KIND_CLASSIFIER:
        raise UploadError(f"model {client.model_name} version {version} is a {kinds.kind_of(card)} model; maps and "
                          "mosaics need a patch classifier (serve one, e.g. the IDC model, and try again)")
    return (lambda batch: client.predict(batch, version=version, explain=False)), version, card


def _one_file(field: str, max_bytes: int):
    files = [f for f in request.files.getlist(field) if f is not None and (f.filename or f.content_length)]
    if len(files) != 1:
        raise UploadError(f"send exactly one file in the form field \"{field}\"; got {len(files)}")
    data = files[0].stream.read(max_bytes + 1)
    return files[0].filename, data


def make_map(with_picture: bool) -> Dict[str, Any]:
    config = current_app.config
    name, data = _one_file("file", config["MAX_MAP_BYTES"])
    upload = check_upload(name, data, 0, config["MAX_MAP_BYTES"], config["MAX_IMAGE_PIXELS"])
    predict, version, card = _predictor(_version())
    settings = _settings(model_patch(card))
    rgb = tiling.decode_rgb(upload.data)  # once, for the tiles and the picture
    try:
        tile_map = tiling.map_image(upload.data, predict, settings, positive_class=card.get("positive_class"),
                                    threshold=card_threshold(card), model_name=service.client().model_name,
                                    card=card, rgb=rgb)
    except tiling.TilingError as err:
        raise UploadError(f"{upload.name}: {err.message}", err.status) from None
    body = {"file": upload.name, **tile_map.as_dict(), "research_only": contract.RESEARCH_ONLY}
    _audit([upload.data], body, "map")
    if with_picture:
        body["map_png"] = overlay.data_uri(tiling.render_map(upload.data, tile_map, contract.RESEARCH_ONLY, rgb=rgb))
    return body


def make_mosaic(with_picture: bool) -> Dict[str, Any]:
    config = current_app.config
    name, data = _one_file("archive", config["MAX_ZIP_BYTES"])
    if len(data) > config["MAX_ZIP_BYTES"]:
        raise UploadError(f"the zip file is larger than {config['MAX_ZIP_BYTES']} bytes", HTTP_TOO_LARGE)
    slide = mosaic.assemble(*mosaic.read_zip(data, max_mosaic_pixels=config["MAX_MOSAIC_PIXELS"]))
    predict, version, card = _predictor(_version())
    settings = tiling.TileSettings(patch=model_patch(card), stride=model_patch(card), batch=int(config["TILE_BATCH"]))
    mosaic.classify(slide, predict, settings, threshold=card_threshold(card),
                    positive_class=card.get("positive_class"), model_name=service.client().model_name, card=card)
    body = {"archive": service_name(name), **slide.as_dict(), "research_only": contract.RESEARCH_ONLY}
    _audit([data], body, "mosaic")
    if with_picture:
        body["mosaic_png"] = overlay.data_uri(mosaic.render(slide, contract.RESEARCH_ONLY))
    return body


def _audit(images: List[bytes], body: Dict[str, Any], route: str) -> None:
    """One audit line for the map or mosaic (webapp.audit): the upload's hash, the model, and
    the count of positive tiles in place of a class."""
    counts = body["counts"]
    audit.record(images, [{"model_name": body["model_name"], "model_version": body["model_version"],
                           "class_name": f"{counts['positive']} positive of {counts['assessed']} assessed",
                           "probability": None}], route)


def service_name(raw: Optional[str]) -> str:
    """The archive's name for display (a plain file name, as uploads are checked)."""
    from webapp.uploads import display_name

    return display_name(raw, 0)


@ui_bp.get("/map")
def map_form():
    return render_template("map.html")


@ui_bp.post("/map")
def map_page():
    return render_template("map_result.html", result=make_map(with_picture=True))


@ui_bp.post("/mosaic")
def mosaic_page():
    return render_template("mosaic_result.html", result=make_mosaic(with_picture=True))


@api_bp.post("/map")
def map_api():
    """Multipart ``file`` (one image larger than the model's patch); optional ``stride``,
    ``version`` and ``picture=1`` (the PNG map as a data URI)."""
    return jsonify(make_map(with_picture=request.values.get("picture", "").lower() in ("1", "true", "yes")))


@api_bp.post("/mosaic")
def mosaic_api():
    """Multipart ``archive`` (a zip of one patient's IDC patches); optional ``version`` and
    ``picture=1``."""
    return jsonify(make_mosaic(with_picture=request.values.get("picture", "").lower() in ("1", "true", "yes")))
