"""Slides in the web app: the slides folder, a deep-zoom viewer, and a slide's probability map.

``webapp.create_app`` calls :func:`init_app`, which registers ``ui_bp`` (``GET /slides``,
``GET /slides/<name>``, ``POST /slides/<name>/map``, the map's bookmarkable page
``GET /slides/<name>/maps/<key>`` and its overlay, marks, JSON and GeoJSON) and ``api_bp``
(``GET /api/slides``, ``POST /api/slides/<name>/map``), plus the DeepZoom tiles the viewer
(templates/_viewer.html, OpenSeadragon) asks for: ``/slide-tiles/<name>.dzi`` and
``/slide-tiles/<name>_files/<level>/<col>_<row>.jpeg``.

Slides are gigabytes: they are never uploaded. The deployment names a server-side folder
(``SLIDES_DIR``, env ``BREASTDX_WEB_SLIDES_DIR``); only files listed in it are served, by
name. ``webapp.slides`` reads them (OpenSlide) and maps them through the app's one
prediction client, batch by batch. A map is kept in memory (the last ``SLIDE_MAPS_KEPT``),
under a key made of the slide file, its modification time and the model version, so its
page can be bookmarked and reloaded while the process holds it.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import threading
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from breastdx_core import contract, model_card
from webapp import audit, service, slides, ui, wholeslide
from webapp.uploads import UploadError

ui_bp = Blueprint("viewer", __name__)
api_bp = Blueprint("viewer_api", __name__, url_prefix="/api")
DEFAULTS = {
    "SLIDES_DIR": None,  # the server-side folder of slides; None: the slide pages say how to set it
    "MAX_SLIDE_PIXELS": slides.DEFAULT_MAX_SLIDE_PIXELS,  # level-0 pixels of one slide
    "MAX_SLIDE_TILES": slides.DEFAULT_MAX_TISSUE_TILES,  # tissue tiles of one map
    "MAX_SLIDES_LISTED": 500,
    "SLIDE_MAPS_KEPT": 16,  # maps held in memory for their pages
}
TILE_CACHE_SECONDS = 3600
OPENSEADRAGON_VERSION = "6.1.1"


def init_app(app: Flask, csrf: Any = None) -> None:
    """Registers the slide blueprints, the defaults they read and their error answers."""
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    app.extensions["slide_cache"] = slides.SlideCache()
    app.extensions["slide_maps"] = MapStore(int(app.config["SLIDE_MAPS_KEPT"]))
    app.register_blueprint(ui_bp)
    app.register_blueprint(api_bp)
    if csrf is not None:
        csrf.exempt(api_bp)


class MapStore:
    """The last few slide maps, by key (thread-safe)."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._items: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)


def _folder() -> str:
    folder = current_app.config.get("SLIDES_DIR")
    if not folder:
        raise slides.SlideError(
            "no slides folder is configured: set SLIDES_DIR (environment variable "
            "BREASTDX_WEB_SLIDES_DIR) to a server-side folder of slides",
            404,
        )
    if not os.path.isdir(folder):
        raise slides.SlideError(f"the slides folder {folder} does not exist on the server", 404)
    return folder


def _names() -> list[str]:
    names = sorted(
        n
        for n in os.listdir(_folder())
        if n.lower().endswith(slides.SLIDE_SUFFIXES) and os.path.isfile(os.path.join(_folder(), n))
    )
    return names[: int(current_app.config["MAX_SLIDES_LISTED"])]


def _path(name: str) -> str:
    """The slide file for a listed name; 404 for anything else (no paths, no guessing)."""
    if name not in _names():
        raise slides.SlideError(f"no slide named {name[:80]!r} in the slides folder", 404)
    return os.path.join(_folder(), name)


def _mpp() -> float | None:
    raw = (request.values.get("mpp") or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UploadError(
            f"microns per pixel must be a number, e.g. 0.25; got {raw[:40]!r}"
        ) from None
    if not slides.MIN_MPP <= value <= slides.MAX_MPP:
        raise UploadError(
            f"microns per pixel {value:g} is outside {slides.MIN_MPP:g} to {slides.MAX_MPP:g}"
        )
    return value


def _open(name: str, mpp: float | None = None) -> tuple[Any, slides.SlideInfo, Any]:
    return current_app.extensions["slide_cache"].get(
        _path(name), mpp=mpp, max_pixels=int(current_app.config["MAX_SLIDE_PIXELS"])
    )


def listing() -> list[dict[str, Any]]:
    """Every slide in the folder with its size and resolution, or why it cannot be mapped."""
    rows = []
    for name in _names():
        path = os.path.join(_folder(), name)
        row: dict[str, Any] = {
            "name": name,
            "bytes": os.path.getsize(path),
            "url": url_for("viewer.slide_page", name=name),
        }
        try:
            _, info, _ = _open(name)
            row.update(
                width=info.width, height=info.height, mpp=round(info.mpp, 4), vendor=info.vendor
            )
        except slides.SlideError as err:
            row["problem"] = err.message.split(": ", 1)[-1]
        rows.append(row)
    return rows


def _key(info: slides.SlideInfo, version: str | None, mpp: float | None) -> str:
    stamp = f"{info.path}|{os.path.getmtime(info.path)}|{version}|{mpp}"
    return hashlib.sha256(stamp.encode("utf-8")).hexdigest()[:16]


def make_map(name: str) -> tuple[str, dict[str, Any]]:
    """Maps a slide with the served model; returns (key, the stored entry)."""
    mpp = _mpp()
    slide, info, _ = _open(name, mpp)
    predict, version, card = wholeslide._predictor(wholeslide._version())
    target = model_card.microns_per_pixel(card)
    if target is None:
        raise slides.SlideError(
            f"model version {version}'s card records no slide scale "
            "(input_contract.microns_per_pixel); slides cannot be mapped with it"
        )
    config = current_app.config
    result = slides.map_slide(
        slide,
        info,
        predict,
        **wholeslide.slide_map_args(card, target),
        model_name=service.client().model_name,
        batch=int(config["TILE_BATCH"]),
        max_tiles=int(config["MAX_SLIDE_TILES"]),
    )
    key = _key(info, result.model_version, mpp)
    body = {
        "slide_name": name,
        **result.as_dict(with_grid=False),
        "research_only": contract.RESEARCH_ONLY,
        "key": key,
    }
    counts = body["counts"]
    audit.record(
        [info.path.encode("utf-8")],
        [
            {
                "model_name": body["model_name"],
                "model_version": body["model_version"],
                "class_name": f"{counts['positive']} positive of {counts['assessed']} assessed",
                "probability": None,
            }
        ],
        "slide_map",
    )
    entry = {"name": name, "body": body, "map": result}
    current_app.extensions["slide_maps"].put(key, entry)
    return key, entry


def _entry(name: str, key: str) -> dict[str, Any]:
    entry = current_app.extensions["slide_maps"].get(key)
    if entry is None or entry["name"] != name:
        raise slides.SlideError(
            f"this map of {name[:80]} is no longer held by the server (it keeps the last "
            f"{current_app.config['SLIDE_MAPS_KEPT']}); map the slide again",
            404,
        )
    return entry


def _links(name: str, key: str) -> dict[str, str]:
    return {
        "page": url_for("viewer.map_page", name=name, key=key),
        "json": url_for("viewer.map_json", name=name, key=key),
        "geojson": url_for("viewer.map_geojson", name=name, key=key),
        "overlay": url_for("viewer.map_overlay", name=name, key=key),
        "marks": url_for("viewer.map_marks", name=name, key=key),
    }


# --- pages -----------------------------------------------------------------------------------
@ui_bp.get("/slides")
def slides_page():
    try:
        rows, problem = listing(), None
    except slides.SlideError as err:
        rows, problem = [], err.message
    return render_template("slides.html", slides=rows, problem=problem)


@ui_bp.get("/slides/<name>")
def slide_page(name: str):
    try:
        _, info, _ = _open(name, _mpp())
        problem = None
    except slides.SlideError as err:
        if not err.needs_mpp:
            raise  # not a slide, too large...: the error page, with a link back to the slides
        info, problem = None, err.message  # no resolution metadata: the page asks for it
    return render_template(
        "slide.html",
        name=name,
        info=info,
        problem=problem,
        result=None,
        links=None,
        **ui.card_context(ui.served_card(None)),
    )


@ui_bp.post("/slides/<name>/map")
def map_slide(name: str):
    key, _ = make_map(name)
    return redirect(url_for("viewer.map_page", name=name, key=key), code=303)


@ui_bp.get("/slides/<name>/maps/<key>")
def map_page(name: str, key: str):
    entry = _entry(name, key)
    result = entry["map"]
    return render_template(
        "slide.html",
        name=name,
        info=result.info,
        problem=None,
        result=entry["body"],
        bounds=result.bounds(),
        links=_links(name, key),
        **ui.card_context(ui.served_card(None)),  # the synthetic-data banner, the rule
    )


def _download(data: bytes, mimetype: str, filename: str | None = None) -> Response:
    response = Response(data, mimetype=mimetype)
    if filename:
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@ui_bp.get("/slides/<name>/maps/<key>/overlay.png")
def map_overlay(name: str, key: str):
    return _download(_entry(name, key)["map"].overlay_png(), "image/png")


@ui_bp.get("/slides/<name>/maps/<key>/marks.png")
def map_marks(name: str, key: str):
    return _download(_entry(name, key)["map"].marks_png(), "image/png")


@ui_bp.get("/slides/<name>/maps/<key>/map.json")
def map_json(name: str, key: str):
    entry = _entry(name, key)
    body = {**entry["body"], "grid": entry["map"].grid()}
    return _download(
        json.dumps(body).encode("utf-8"),
        "application/json",
        f"{os.path.splitext(name)[0]}.map.json",
    )


@ui_bp.get("/slides/<name>/maps/<key>/regions.geojson")
def map_geojson(name: str, key: str):
    data = json.dumps(_entry(name, key)["map"].geojson()).encode("utf-8")
    return _download(data, "application/geo+json", f"{os.path.splitext(name)[0]}.geojson")


# --- DeepZoom tiles ------------------------------------------------------------------------------
@ui_bp.get("/slide-tiles/<name>.dzi")
def dzi(name: str):
    _, _, deepzoom = _open(name, _mpp())
    return Response(slides.dzi_xml(deepzoom), mimetype="application/xml")


@ui_bp.get("/slide-tiles/<name>_files/<int:level>/<int:col>_<int:row>.jpeg")
def dzi_tile(name: str, level: int, col: int, row: int):
    try:
        _, _, deepzoom = _open(name, _mpp())
    except slides.SlideError as err:
        if err.http_status == 404:
            abort(404)
        raise
    response = Response(slides.dzi_tile(deepzoom, level, col, row), mimetype="image/jpeg")
    response.cache_control.max_age = TILE_CACHE_SECONDS
    response.cache_control.private = True
    return response


# --- JSON API ----------------------------------------------------------------------------
@api_bp.get("/slides")
def slides_api():
    return jsonify({"slides": listing(), "research_only": contract.RESEARCH_ONLY})


@api_bp.post("/slides/<name>/map")
def map_api(name: str):
    """Maps a slide from the slides folder; optional ``version``, ``mpp`` (where the slide has
    no resolution metadata) and ``grid=1`` (the per-tile probabilities)."""
    key, entry = make_map(name)
    body = dict(entry["body"])
    if request.values.get("grid", "").lower() in ("1", "true", "yes"):
        body["grid"] = entry["map"].grid()
    body["links"] = _links(name, key)
    return jsonify(body)
