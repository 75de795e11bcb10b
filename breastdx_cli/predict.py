"""``breastdx predict IMAGE...``: classify files from the command line, checked as uploads are.

``breastdx_cli.main`` calls :func:`add_predict_parser` and :func:`run_predict`. With
``--server URL --model NAME`` the files go to a model server over TF Serving's REST API
(``webapp.clients.RestClient``, no TensorFlow in this process); with ``--saved-model DIR``
the SavedModel's ``serving_default`` runs in-process. Either way the bytes are sent as
read: the model's own graph decodes and resizes them.

Every file is first checked by ``webapp.uploads.check_upload`` (the web app's own check:
content signature, pixel limit, full decode), so a TIFF, an empty or truncated file gets
its own line with the reason and the other files are still classified; the exit status is
1 when any file failed. An image larger than the model's native patch (IDC: 50x50) is
tiled like the web app's ``/map`` (``webapp.tiling``) and its probability map written as
a PNG to ``--map-dir``; ``--mosaic FOLDER`` rebuilds a patient's slide from its IDC
patches (``webapp.mosaic``). A whole-slide image (SVS, pyramidal TIFF... ``webapp.slides``)
is read at the model's scale and mapped tile by tile: ``<stem>.map.png``, ``<stem>.map.json``
and ``<stem>.geojson`` (QuPath) in ``--map-dir``; a slide that cannot be mapped (not a
slide, no resolution metadata without ``--mpp``, over the limits) is refused in one line
and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from breastdx_core import contract
from serving import settings

log = logging.getLogger(__name__)

DEFAULT_SERVER = settings.DEFAULT_SERVER_URL
DEFAULT_MODEL = settings.DEFAULT_MODEL_NAME
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAP_SUFFIX = ".map.png"
MOSAIC_SUFFIX = ".mosaic.png"
SLIDE_JSON_SUFFIX = ".map.json"
SLIDE_GEOJSON_SUFFIX = ".geojson"


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``predict`` verb to ``breastdx_cli.main``'s subparsers."""
    parser = subparsers.add_parser(
        "predict",
        help="classify image files (research use only)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="PNG/JPEG/GIF/BMP files, or whole-slide images (SVS, tiled TIFF...)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", default=DEFAULT_SERVER, help="model server REST URL")
    where.add_argument(
        "--saved-model", default=None, help="a SavedModel folder to run in-process instead"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="served model name (with --server)")
    parser.add_argument(
        "--version", default=None, help="served version (with --server); default the newest"
    )
    parser.add_argument(
        "--map-dir",
        default=".",
        help="where probability maps of images larger than the "
        "model's patch (and --mosaic pictures) are written",
    )
    parser.add_argument(
        "--stride", type=int, default=0, help="pixels between map tiles; 0: the model's patch"
    )
    parser.add_argument(
        "--mosaic",
        default=None,
        metavar="FOLDER",
        help="a patient's folder of IDC patches (<patient>_idx5_x<X>_y<Y>_class<C>.png) "
        "to rebuild as the whole-slide mosaic",
    )
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        metavar="MICRONS",
        help="a slide's level-0 microns per pixel where it holds none (40x: 0.25)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per file instead of text"
    )
    parser.set_defaults(func=run_predict)
    return parser


class _SavedModelPredictor:
    """``serving_default`` of a SavedModel in this process, answering like the REST client."""

    def __init__(self, path: str):
        import tensorflow as tf

        self._tf = tf
        self._function = tf.saved_model.load(path).signatures[contract.SIGNATURE_BYTES]
        self.model_name = os.path.basename(os.path.normpath(path))

    def predict(
        self, images: list[bytes], version: str | None = None, explain: bool = False
    ) -> list:
        from webapp.clients import prediction_from_row

        outputs = self._function(**{contract.SERVING_INPUT_BYTES: self._tf.constant(images)})
        columns = {name: value.numpy().tolist() for name, value in outputs.items()}
        rows = [
            {
                name: (value[i].decode("utf-8") if isinstance(value[i], bytes) else value[i])
                for name, value in columns.items()
            }
            for i in range(len(images))
        ]
        return [prediction_from_row(row, self.model_name, None) for row in rows]


def _saved_model_card(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, contract.MODEL_CARD_RELPATH), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _checked(paths: list[str], max_bytes: int, max_pixels: int) -> tuple[list[Any], dict[str, str]]:
    """(accepted uploads with their paths, failures by path) using the web app's upload check."""
    from webapp.uploads import UploadError, check_upload

    accepted, failed = [], {}
    for index, path in enumerate(paths):
        try:
            with open(path, "rb") as handle:
                data = handle.read(max_bytes + 1)
            accepted.append(
                (path, check_upload(os.path.basename(path), data, index, max_bytes, max_pixels))
            )
        except OSError as err:
            failed[path] = f"cannot read the file ({err.strerror or err})"
        except UploadError as err:
            failed[path] = err.message.split(": ", 1)[-1]
    return accepted, failed


def _stem_path(folder: str, path: str, suffix: str) -> str:
    return os.path.join(
        folder, os.path.splitext(os.path.basename(os.path.normpath(path)))[0] + suffix
    )


def run_predict(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Prints ``FILE: CLASS p=PROBABILITY`` per image (``FILE: refused: REASON`` for a bad
    file, ``FILE: map ...`` for a tiled one), the model and the research-only line.

    Returns:
        0 when every file was answered, 1 when any file failed or the model could not
        answer, 2 for a usage error (no file, no SavedModel at the path).
    """
    from breastdx_core import decision
    from webapp import DEFAULTS, tiling, wholeslide
    from webapp.clients import PredictionError

    out = out or sys.stdout
    if not args.images and not args.mosaic:
        log.error("nothing to classify: give IMAGE files and/or --mosaic FOLDER")
        return EXIT_USAGE
    if args.saved_model:
        if not os.path.isfile(os.path.join(args.saved_model, "saved_model.pb")):
            log.error("--saved-model %s has no saved_model.pb", args.saved_model)
            return EXIT_USAGE
        client: Any = _SavedModelPredictor(args.saved_model)
        card, version, source = _saved_model_card(args.saved_model), None, args.saved_model
    else:
        from webapp.clients import RestClient

        client = RestClient(args.server, args.model)
        try:
            version = args.version or client.newest_version()
            card = client.card(version)
        except PredictionError as err:
            log.error("%s", err.message)
            return EXIT_FAILED
        source = f"{args.model} version {version} at {args.server}"

    def predict(batch: list[bytes]) -> list:
        return client.predict(batch, version=version, explain=False)

    from webapp import slides

    slide_paths = [path for path in args.images if slides.is_slide_path(path)]
    images = [path for path in args.images if path not in slide_paths]
    accepted, failed = _checked(images, DEFAULTS["MAX_MAP_BYTES"], DEFAULTS["MAX_IMAGE_PIXELS"])
    # Only a task trained on native patches (IDC) is tiled; BUSI's whole images are classified whole.
    spec = contract.get_task(
        card.get("task") if card.get("task") in contract.TASKS else "idc"
    ).image
    patch = wholeslide.model_patch(card)
    larger = [bool(spec.native_size) and (u.width > patch or u.height > patch) for _, u in accepted]
    tiled = [item for item, big in zip(accepted, larger) if big]
    whole = [item for item, big in zip(accepted, larger) if not big]
    lines: dict[str, dict[str, Any]] = {
        path: {"file": path, "error": reason} for path, reason in failed.items()
    }
    try:
        if whole:
            names = list(card.get("class_names") or [])
            for (path, upload), answer in zip(whole, predict([u.data for _, u in whole])):
                # The server's decision; from a backend without one (a SavedModel here, TF
                # Serving) the same rule on the same card (breastdx_core/decision.py).
                ruled = _decision_fields(answer).get("decision") or decision.assess(
                    card, upload.data, answer.probabilities, answer.ood_score
                )
                called = ruled.get("class_name")
                lines[path] = {
                    "file": path,
                    "class_name": called,
                    "decision": ruled,
                    "probability": answer.probabilities[names.index(called)]
                    if called in names
                    else None,
                }
        for path, upload in tiled:
            lines[path] = _map_line(path, upload, predict, card, args, tiling, wholeslide)
        for path in slide_paths:
            lines[path] = _slide_line(path, predict, card, args, wholeslide)
        if args.mosaic:
            lines[args.mosaic] = _mosaic_line(args.mosaic, predict, card, args, wholeslide)
    except PredictionError as err:
        log.error("%s", err.message)
        return EXIT_FAILED
    order = list(args.images) + ([args.mosaic] if args.mosaic else [])
    for path in order:
        print(_format(lines[path], args.json), file=out)
    print(f"model: {source}", file=out)
    print(contract.RESEARCH_ONLY, file=out)
    if any("error" in lines[path] for path in slide_paths):
        return EXIT_USAGE  # a slide that cannot be mapped as asked is the caller's to fix
    return EXIT_FAILED if any("error" in line for line in lines.values()) else EXIT_OK


def _decision_fields(answer: Any) -> dict[str, Any]:
    """The model server's decision for the line (breastdx_core/decision.py's fields), where it sends one."""
    ruled = getattr(answer, "decision", None)
    return {"decision": ruled} if isinstance(ruled, dict) and ruled.get("status") else {}


def _map_line(
    path: str,
    upload: Any,
    predict: Callable,
    card: dict[str, Any],
    args: argparse.Namespace,
    tiling: Any,
    wholeslide: Any,
) -> dict[str, Any]:
    patch = wholeslide.model_patch(card)
    try:
        settings = tiling.TileSettings(patch=patch, stride=args.stride or patch)
        tile_map = tiling.map_image(
            upload.data,
            predict,
            settings,
            positive_class=card.get("positive_class"),
            threshold=wholeslide.card_threshold(card),
            card=card,
        )
    except tiling.TilingError as err:
        return {"file": path, "error": err.message}
    os.makedirs(args.map_dir, exist_ok=True)
    target = _stem_path(args.map_dir, path, MAP_SUFFIX)
    with open(target, "wb") as handle:
        handle.write(tiling.render_map(upload.data, tile_map, contract.RESEARCH_ONLY))
    top = tile_map.top_regions(1)
    return {
        "file": path,
        "map": target,
        "rows": tile_map.rows,
        "cols": tile_map.cols,
        **tile_map.counts(),
        "max_probability": top[0]["positive_probability"] if top else None,
        "seconds": round(tile_map.seconds, 2),
    }


def _slide_line(
    path: str, predict: Callable, card: dict[str, Any], args: argparse.Namespace, wholeslide: Any
) -> dict[str, Any]:
    """Maps a whole-slide image; writes its picture, JSON and GeoJSON to ``--map-dir``."""
    from breastdx_core import model_card
    from webapp import DEFAULTS, slides

    target = model_card.microns_per_pixel(card)
    try:
        if target is None:
            raise slides.SlideError(
                "the model's card records no slide scale (input_contract.microns_per_pixel)"
            )
        slide, info = slides.open_slide(path, mpp=args.mpp)
        try:
            result = slides.map_slide(
                slide,
                info,
                predict,
                **wholeslide.slide_map_args(card, target),
                batch=DEFAULTS["TILE_BATCH"],
            )
            os.makedirs(args.map_dir, exist_ok=True)
            picture = _stem_path(args.map_dir, path, MAP_SUFFIX)
            with open(picture, "wb") as handle:
                handle.write(result.render_png(slide, contract.RESEARCH_ONLY))
        finally:
            slide.close()
    except slides.SlideError as err:
        return {
            "file": path,
            "error": err.message.split(": ", 1)[-1]
            if err.message.startswith(os.path.basename(path) + ": ")
            else err.message,
        }
    body = {**result.as_dict(), "research_only": contract.RESEARCH_ONLY}
    mapped = _stem_path(args.map_dir, path, SLIDE_JSON_SUFFIX)
    with open(mapped, "w", encoding="utf-8") as handle:
        json.dump(body, handle)
    regions = _stem_path(args.map_dir, path, SLIDE_GEOJSON_SUFFIX)
    with open(regions, "w", encoding="utf-8") as handle:
        json.dump(result.geojson(), handle)
    top = result.top_regions(1)
    return {
        "file": path,
        "map": picture,
        "json": mapped,
        "geojson": regions,
        "rows": result.rows,
        "cols": result.cols,
        **result.counts(),
        "level": result.choice.level,
        "max_probability": top[0]["positive_probability"] if top else None,
        "seconds": round(result.timings["total"], 2),
    }


def _mosaic_line(
    folder: str, predict: Callable, card: dict[str, Any], args: argparse.Namespace, wholeslide: Any
) -> dict[str, Any]:
    from webapp import mosaic, tiling
    from webapp.uploads import UploadError

    try:
        slide = mosaic.assemble(*mosaic.read_folder(folder))
    except UploadError as err:
        return {"file": folder, "error": err.message}
    patch = wholeslide.model_patch(card)
    mosaic.classify(
        slide,
        predict,
        tiling.TileSettings(patch=patch, stride=patch),
        threshold=wholeslide.card_threshold(card),
        positive_class=card.get("positive_class"),
        card=card,
    )
    os.makedirs(args.map_dir, exist_ok=True)
    target = _stem_path(args.map_dir, folder, MOSAIC_SUFFIX)
    with open(target, "wb") as handle:
        handle.write(mosaic.render(slide, contract.RESEARCH_ONLY))
    return {
        "file": folder,
        "mosaic": target,
        "patient": slide.patient,
        **slide.counts(),
        "refused": slide.refused,
    }


def _format(line: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(line, sort_keys=True)
    path = line["file"]
    if "error" in line:
        return f"{path}: refused: {line['error']}"
    if "map" in line:
        top = (
            "" if line["max_probability"] is None else f", highest p={line['max_probability']:.4f}"
        )
        extra = f", {line['geojson']}, {line['json']}" if "geojson" in line else ""
        return (
            f"{path}: map {line['rows']}x{line['cols']} tiles: {line['assessed']} assessed, {line['uncertain']} "
            f"uncertain, {line['flagged']} not assessed, {line['positive']} positive, {line['background']} "
            f"background{top} -> {line['map']}{extra}"
        )
    if "mosaic" in line:
        return (
            f"{path}: mosaic of patient {line['patient']}: {line['patches']} patches, {line['assessed']} "
            f"assessed, {line['uncertain']} uncertain, {line['flagged']} not assessed, {line['positive']} "
            f"positive -> {line['mosaic']}" + "".join(f"\n  left out: {r}" for r in line["refused"])
        )
    ruled = line.get("decision") or {}
    if ruled.get("status") in ("not_assessed", "uncertain"):  # the server's words, no class
        members = (
            f" (set: {', '.join(ruled.get('prediction_set') or [])})"
            if ruled.get("prediction_set")
            else ""
        )
        return f"{path}: {ruled.get('text') or ruled['status']}{members}"
    probability = "" if line.get("probability") is None else f" p={line['probability']:.4f}"
    return f"{path}: {line['class_name']}{probability}"
