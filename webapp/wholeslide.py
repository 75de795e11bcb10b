"""Whole images and whole slides in the web app: the probability map and the patient mosaic.

``webapp.create_app`` registers the two blueprints: ``ui_bp`` (``GET/POST /map``,
``GET/POST /mosaic``: the form; a finished map or mosaic is kept by ``webapp.results_store``
and shown on its own bookmarkable page, ``/map/<id>`` and ``/mosaic/<id>``, with its PNG
and JSON for export) and ``api_bp`` (``POST /api/map``, ``POST /api/mosaic``: JSON with
the grid). A map applies the model card's input contract to the whole image and its
tissue before any tile is sent (:func:`whole_image_reason`). ``webapp.tiling`` cuts and
maps a large image; ``webapp.mosaic``
reads a zip of a patient's IDC patches; both send tiles to the model server through the
app's one prediction client, so the model's graph does all preprocessing.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from breastdx_core import contract, decision
from webapp import answers, audit, kinds, mosaic, overlay, results_store, service, tiling
from webapp.uploads import (
    HTTP_TOO_LARGE,
    UploadError,
    check_upload,
    human_bytes,
    limit_bytes,
    sniff_format,
)

log = logging.getLogger(__name__)
ui_bp = Blueprint("wholeslide", __name__)
api_bp = Blueprint("wholeslide_api", __name__, url_prefix="/api")
DEFAULT_THRESHOLD = 0.5  # positive when P(positive) >= this, where neither server nor card decides


def _version() -> str | None:
    version = (request.values.get("version") or "").strip() or None
    if version is not None and not version.isdigit():
        raise UploadError(f"version must be an integer, got {version[:40]!r}")
    return version


def model_patch(card: dict[str, Any]) -> int:
    """The side of the image patch the model was trained on: the task's native patch (IDC
    50) or its model size; IDC's where the card names no task."""
    try:
        spec = contract.get_task(card.get("task") or "idc").image
    except ValueError:
        spec = contract.get_task("idc").image
    return int((spec.native_size or spec.model_size)[0])


def card_threshold(card: dict[str, Any]) -> float:
    """The card's decision threshold on P(positive) where it holds one, else 0.5."""
    for holder in (card.get("decision_rule"), card.get("evaluation_report"), card):
        if isinstance(holder, dict):
            for key in ("threshold", "operating_threshold"):
                if isinstance(holder.get(key), (int, float)):
                    return float(holder[key])
    return DEFAULT_THRESHOLD


def slide_map_args(card: dict[str, Any], target_mpp: float) -> dict[str, Any]:
    """What `slides.map_slide` takes from the model's card: the patch side, the scale, the
    positive class and the decision threshold (the web viewer and `breastdx predict`)."""
    return {
        "patch": model_patch(card),
        "target_mpp": target_mpp,
        "card": card,
        "positive_class": card.get("positive_class"),
        "threshold": card_threshold(card),
    }


def _settings(patch: int) -> tiling.TileSettings:
    config = current_app.config
    raw = (request.values.get("stride") or "").strip()
    if raw and not raw.isdigit():
        raise UploadError(f"stride must be a whole number of pixels, got {raw[:40]!r}")
    try:
        return tiling.TileSettings(
            patch=patch,
            stride=int(raw) if raw else int(config["TILE_STRIDE"] or patch),
            max_tiles=int(config["MAX_TILES"]),
            batch=int(config["TILE_BATCH"]),
        )
    except tiling.TilingError as err:
        raise UploadError(err.message, err.status) from None


def _predictor(
    version: str | None,
) -> tuple[Callable[[list[bytes]], list], str | None, dict[str, Any]]:
    """A function that classifies a batch of encoded tiles with one fixed version, and its card."""
    client = service.client()
    if version is None and hasattr(client, "newest_version"):
        version = client.newest_version()  # every batch of one map goes to the same version
    card = service.card_for(version)
    if kinds.kind_of(card) != kinds.KIND_CLASSIFIER:
        raise UploadError(
            f"model {client.model_name} version {version} is a {kinds.kind_of(card)} model; "
            "maps and "
            "mosaics need a patch classifier (serve one, e.g. the IDC model, and try again)"
        )
    return (lambda batch: client.predict(batch, version=version, explain=False)), version, card


def _named(name: str, err: UploadError | tiling.TilingError) -> UploadError:
    """``err`` as a refusal that starts with the uploaded file's name, as every page's
    refusals do (`check_upload`'s, the slide page's)."""
    prefix = f"{name}: "
    message = err.message if err.message.startswith(prefix) else prefix + err.message
    return UploadError(message, err.status)


def _one_file(field: str, max_bytes: int) -> tuple[str | None, bytes, int | None]:
    """(name, the first ``max_bytes + 1`` bytes, the real size) of the form's one file."""
    files = [
        f
        for f in request.files.getlist(field)
        if f is not None and (f.filename or f.content_length)
    ]
    if len(files) != 1:
        what = "image" if field == "file" else "zip file"
        raise UploadError(f"choose exactly one {what}; {len(files)} were sent")
    size = service.stream_size(files[0])
    data = files[0].stream.read(max_bytes + 1)
    return files[0].filename, data, size


TISSUE_SAMPLE = 64  # tissue tiles checked against the input contract before any is sent
MAP_PICTURE_SIDE = 4096  # the stored map picture keeps the image's own pixels up to this side


def whole_image_reason(card: dict[str, Any], upload: Any) -> Callable[..., str | None] | None:
    """The whole-image check for :func:`webapp.tiling.map_image` under ``card``'s input
    contract, or None when the card holds no contract.

    The single-patch path refuses an image outside the contract; a map applies the same
    contract to the whole image (channels, bit depth) and to its tissue: when most of an
    even sample of the tissue tiles would each be refused on their own, the whole image is
    not assessed, with the commonest reason. Tiles that pass are still checked one by one
    by the model server (contract and OOD score)."""
    accepted = (card.get("input_contract") or {}).get("accepted")
    if not accepted:
        return None
    what = answers.noun(card)

    def refuse(reason: str) -> str:
        plain = answers.plain_reason({"reason": reason}, card)
        return (
            f"{upload.name}: not assessed: as a whole it is not {what} "
            f"like those the model was trained on ({plain})"
        )

    def check(rgb, tiles, patch) -> str | None:
        whole = decision.contract_reason(
            accepted, decision.inspect_image(upload.data, colour=False), check_size=False
        )
        if whole:
            return refuse(whole)
        tissue = [t for t in tiles if t.status == tiling.STATUS_TISSUE]
        if not tissue:
            return None
        step = max(1, len(tissue) // TISSUE_SAMPLE)
        reasons = []
        for tile in tissue[::step][:TISSUE_SAMPLE]:
            crop = tiling.encode_tile(rgb[tile.y : tile.y + patch, tile.x : tile.x + patch])
            reasons.append(
                decision.contract_reason(accepted, decision.inspect_image(crop), check_size=False)
            )
        refused = [r for r in reasons if r]
        if len(refused) * 2 > len(reasons):
            common = (
                max(set(refused), key=refused.count)
                if len(set(refused)) < len(refused)
                else refused[0]
            )
            return refuse(f"{len(refused)} of {len(reasons)} sampled tissue tiles: {common}")
        return None

    return check


def make_map(
    with_picture: bool, display_side: int = tiling.MAP_DISPLAY_SIDE, layers: bool = False
) -> tuple[dict[str, Any], bytes | None, dict[str, bytes]]:
    """(the map's JSON body, its PNG picture with the legend or None, and with ``layers``
    the viewer's pictures: the image, the overlay and the refer marks)."""
    config = current_app.config
    name, data, size = _one_file("file", config["MAX_MAP_BYTES"])
    upload = check_upload(
        name, data, 0, config["MAX_MAP_BYTES"], config["MAX_IMAGE_PIXELS"], size=size, convert=True
    )
    predict, version, card = _predictor(_version())
    settings = _settings(model_patch(card))
    try:
        tiling.check_grid(upload.width, upload.height, settings)  # before any pixel is decoded
        rgb = tiling.decode_rgb(upload.data)  # once, for the tiles and the picture
        tile_map = tiling.map_image(
            upload.data,
            predict,
            settings,
            positive_class=card.get("positive_class"),
            threshold=card_threshold(card),
            model_name=service.client().model_name,
            card=card,
            rgb=rgb,
            check_whole=whole_image_reason(card, upload),
        )
    except tiling.TilingError as err:
        raise _named(upload.name, err) from None
    body = {
        "file": upload.name,
        **tile_map.as_dict(),
        "research_only": contract.RESEARCH_ONLY,
        "assessment": map_assessment(tile_map.counts(), card),
        "synthetic_data": answers.is_synthetic(card),
    }
    _audit([upload.data], body, "map")
    picture = None
    if with_picture:
        picture = tiling.render_map(upload.data, tile_map, contract.RESEARCH_ONLY, rgb=rgb)
    viewer = {}
    if layers:
        overlay_png, marks_png = tiling.map_layers(tile_map, display_side)
        viewer = {"image": upload.data, "overlay": overlay_png, "marks": marks_png}
        body["viewer"] = {
            "width": upload.width,
            "height": upload.height,
            "regions": body["top_regions"],
        }
    return body, picture, viewer


def map_assessment(counts: dict[str, int], card: dict[str, Any]) -> dict[str, Any]:
    """The map's one sentence: how many tissue tiles were called positive and how many go
    to a pathologist; "not assessed" when the model server refused most tissue tiles."""
    sent = counts["assessed"] + counts["uncertain"] + counts["flagged"]
    positive_class = card.get("positive_class") or "positive"
    if sent == 0:
        return {"status": "not_assessed", "text": "Not assessed: no tissue was found in the image"}
    if counts["flagged"] * 2 > sent:
        return {
            "status": "not_assessed",
            "text": f"Not assessed: {counts['flagged']:,} of {sent:,} tissue tiles are unlike "
            "the images the "
            f"model was trained on, so the image as a whole is not {answers.noun(card)}",
        }
    text = f"{counts['positive']:,} of {sent:,} tissue tiles {positive_class}"
    if counts["uncertain"]:
        text += f"; {counts['uncertain']:,} to refer to a pathologist (uncertain)"
    if counts["flagged"]:
        text += f"; {counts['flagged']:,} not assessed"
    return {"status": "assessed", "text": text}


def make_mosaic(
    with_picture: bool, layers: bool = False
) -> tuple[dict[str, Any], bytes | None, dict[str, bytes]]:
    """(the mosaic's JSON body, its PNG picture with the legend or None, and with ``layers``
    the viewer's pictures)."""
    config = current_app.config
    name, data, size = _one_file("archive", config["MAX_ZIP_BYTES"])
    archive = service_name(name)
    if len(data) > config["MAX_ZIP_BYTES"]:
        raise UploadError(
            f"{archive}: {human_bytes(size or len(data))}; zip files of at most "
            f"{limit_bytes(config['MAX_ZIP_BYTES'])} are accepted",
            HTTP_TOO_LARGE,
        )
    try:
        slide = mosaic.assemble(
            *mosaic.read_zip(data, max_mosaic_pixels=config["MAX_MOSAIC_PIXELS"])
        )
    except UploadError as err:
        raise _named(archive, err) from None
    predict, version, card = _predictor(_version())
    settings = tiling.TileSettings(
        patch=model_patch(card), stride=model_patch(card), batch=int(config["TILE_BATCH"])
    )
    mosaic.classify(
        slide,
        predict,
        settings,
        threshold=card_threshold(card),
        positive_class=card.get("positive_class"),
        model_name=service.client().model_name,
        card=card,
    )
    body = {
        "archive": archive,
        **slide.as_dict(),
        "research_only": contract.RESEARCH_ONLY,
        "synthetic_data": answers.is_synthetic(card),
    }
    _audit([data], body, "mosaic")
    picture = mosaic.render(slide, contract.RESEARCH_ONLY) if with_picture else None
    viewer = {}
    if layers:
        image_png, overlay_png, marks_png, scale = mosaic.layers(
            slide, display_side=MAP_PICTURE_SIDE
        )
        viewer = {"image": image_png, "overlay": overlay_png, "marks": marks_png}
        body["viewer"] = {
            "width": max(1, round(slide.width * scale)),
            "height": max(1, round(slide.height * scale)),
            "regions": [
                {
                    **r,
                    "x": round(r["x"] * scale),
                    "y": round(r["y"] * scale),
                    "width": max(1, round(r["width"] * scale)),
                    "height": max(1, round(r["height"] * scale)),
                }
                for r in body["top_regions"]
            ],
        }
    return body, picture, viewer


def _audit(images: list[bytes], body: dict[str, Any], route: str) -> None:
    """One audit line for the map or mosaic (webapp.audit): the upload's hash, the model, and
    the count of positive tiles in place of a class."""
    counts = body["counts"]
    audit.record(
        images,
        [
            {
                "model_name": body["model_name"],
                "model_version": body["model_version"],
                "class_name": f"{counts['positive']} positive of {counts['assessed']} assessed",
                "probability": None,
            }
        ],
        route,
    )


def service_name(raw: str | None) -> str:
    """The archive's name for display (a plain file name, as uploads are checked)."""
    from webapp.uploads import display_name

    return display_name(raw, 0)


@ui_bp.get("/map")
def map_form():
    return render_template("map.html", **page_card_context())


@ui_bp.get("/mosaic")
def mosaic_form():
    """The same form page (its mosaic half): a bookmarked or reloaded ``/mosaic`` is no 405."""
    return render_template("map.html", focus="mosaic", **page_card_context())


def page_card_context() -> dict[str, Any]:
    from webapp import ui

    card = ui.served_card(None)
    return {
        "synthetic_note": answers.synthetic_note([card]),
        "card": card,
        "max_stride": tiling.MAX_STRIDE_FACTOR * model_patch(card),
    }


@ui_bp.post("/map")
def map_page():
    body, picture, layers = make_map(with_picture=True, display_side=MAP_PICTURE_SIDE, layers=True)
    return _keep_and_show("map", body, {"picture": picture, **layers}, "map_result.html")


@ui_bp.post("/mosaic")
def mosaic_page():
    body, picture, layers = make_mosaic(with_picture=True, layers=True)
    return _keep_and_show("mosaic", body, {"picture": picture, **layers}, "mosaic_result.html")


def _keep_and_show(kind: str, body: dict[str, Any], pictures: dict[str, bytes], template: str):
    """Stores the result and redirects to its page; where the store cannot be written (a
    read-only disk), the page is shown at once with its pictures inline, and says that it
    cannot be bookmarked."""
    try:
        result_id = results_store.save(kind, body, pictures)
    except OSError as err:
        log.warning(
            "results store %s not writable (%s): the %s page is shown once",
            results_store.root(),
            err,
            kind,
        )
        urls = {name: _data_uri(png) for name, png in pictures.items()}
        urls["json"] = "data:application/json;base64," + base64.b64encode(
            json.dumps(body).encode("utf-8")
        ).decode("ascii")
        return _render_result(kind, body, template, None, urls)
    return redirect(url_for(f"wholeslide.{kind}_result", result_id=result_id), code=303)


def _data_uri(data: bytes) -> str:
    fmt = (sniff_format(data[:16]) or "PNG").lower()
    return f"data:image/{fmt};base64," + base64.b64encode(data).decode("ascii")


def _result_page(kind: str, result_id: str, template: str):
    body = results_store.load(kind, result_id)
    urls = {
        name: url_for("wholeslide.result_png", kind=kind, result_id=result_id, layer=name)
        for name in results_store.PICTURES
    }
    urls["download"] = url_for(
        "wholeslide.result_png", kind=kind, result_id=result_id, layer="picture", download=1
    )
    urls["json"] = url_for("wholeslide.result_json", kind=kind, result_id=result_id)
    return _render_result(kind, body, template, result_id, urls)


def _render_result(
    kind: str, body: dict[str, Any], template: str, result_id: str | None, urls: dict[str, str]
):
    card = service.card_for(body.get("model_version"))
    from webapp import ui

    context = (
        ui.card_context(card) if card else {"rule_lines": [], "card": {}, "synthetic_note": None}
    )
    if body.get("synthetic_data"):
        context["synthetic_note"] = answers.SYNTHETIC_TEXT
    return render_template(template, result=body, result_id=result_id, urls=urls, **context)


@ui_bp.get("/map/<result_id>")
def map_result(result_id: str):
    return _result_page("map", result_id, "map_result.html")


@ui_bp.get("/mosaic/<result_id>")
def mosaic_result(result_id: str):
    return _result_page("mosaic", result_id, "mosaic_result.html")


@ui_bp.get("/<any(map, mosaic):kind>/<result_id>/result.json")
def result_json(kind: str, result_id: str):
    response = jsonify(results_store.load(kind, result_id))
    response.headers["Content-Disposition"] = f"attachment; filename={kind}-{result_id[:8]}.json"
    return response


@ui_bp.get("/<any(map, mosaic):kind>/<result_id>/<any(picture, image, overlay, marks):layer>.png")
def result_png(kind: str, result_id: str, layer: str):
    """The export picture (``picture``: with its legend) or one of the viewer's layers."""
    name = layer
    path = results_store.picture_path(kind, result_id, name)
    with open(path, "rb") as handle:
        fmt = (
            sniff_format(handle.read(16)) or "PNG"
        )  # the image layer is the upload as sent to the model
    download = request.args.get("download") == "1"
    return send_file(
        path,
        mimetype=f"image/{fmt.lower()}",
        as_attachment=download,
        download_name=f"{kind}-{result_id[:8]}{'' if name == 'picture' else '-' + name}.png",
        max_age=3600,
    )


@api_bp.post("/map")
def map_api():
    """Multipart ``file`` (one image larger than the model's patch); optional ``stride``,
    ``version`` and ``picture=1`` (the PNG map with its legend, as a data URI)."""
    body, picture, _ = make_map(with_picture=_wants_picture())
    if picture is not None:
        body["map_png"] = overlay.data_uri(picture)
    return jsonify(body)


@api_bp.post("/mosaic")
def mosaic_api():
    """Multipart ``archive`` (a zip of one patient's IDC patches); optional ``version`` and
    ``picture=1``."""
    body, picture, _ = make_mosaic(with_picture=_wants_picture())
    if picture is not None:
        body["mosaic_png"] = overlay.data_uri(picture)
    return jsonify(body)


def _wants_picture() -> bool:
    return request.values.get("picture", "").lower() in ("1", "true", "yes")
