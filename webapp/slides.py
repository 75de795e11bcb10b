"""Whole-slide images: open a pyramidal slide, pick its level, mask tissue, map it, export.

``webapp.viewer`` (the slide pages, their DZI tiles and ``POST /slides/<name>/map``),
``breastdx_cli.predict`` (``breastdx predict SLIDE --map-dir``) and ``bench/slide.py`` call
:func:`open_slide` and :func:`map_slide`. Slides are read with OpenSlide (``openslide-python``
with the wheel-packaged ``openslide-bin``: Aperio SVS, generic tiled TIFF, Hamamatsu, MIRAX,
Leica, Ventana, DICOM WSI; no system library). A tiled OME-TIFF is read as a generic TIFF:
its full-resolution plane only (OpenSlide does not use a pyramid kept in SubIFDs, so its low
zoom levels are built from that plane: slower), at the OME-XML's ``PhysicalSizeX``. The tests
write and read the SVS, the generic tiled TIFF and that OME-TIFF (pipeline/synthetic_slide.py);
DICOM WSI and the other vendors' formats are OpenSlide's and not tested here.

The model was trained on patches at one scale (IDC: 50x50 px at 2.5x of a 40x scan, about
4 um/px; the card's ``input_contract.microns_per_pixel``). The slide's microns per pixel
pick the pyramid level nearest that scale without going coarser; only when no level is
within :data:`MPP_TOLERANCE` of it is the level's region area-averaged down to the model's
scale, as a scanner builds its own pyramid: that is reading the slide at a magnification,
not preprocessing for the model (the model's graph still decodes, pads and scales each
patch). A tissue mask at low resolution (the same glass rule as ``webapp.tiling``) picks the
tiles; tissue tiles are read band by band and streamed through the model server in batches
with a bounded number in flight, so memory holds a few bands and batches whatever the slide's
size (plus the per-tile result grid: a few bytes a tile). Each tile gets the same decision
rule as a single patch (``webapp.tiling.decision``, i.e. breastdx_core/decision.py).

Outputs: the map's JSON (:meth:`SlideMap.as_dict`), a GeoJSON FeatureCollection in level-0
pixels that QuPath imports (:meth:`SlideMap.geojson`), the overlay and marks the viewer lays
over the slide, and a PNG picture with a legend for the command line. No TensorFlow.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import io
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from breastdx_core import errors
from webapp import overlay, tiling

SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
)
VENDOR_SUFFIXES = tuple(s for s in SLIDE_SUFFIXES if s not in (".tif", ".tiff"))
MPP_TOLERANCE = 0.1  # a level within 10 % of the model's scale is read as it is
MIN_MPP, MAX_MPP = 0.05, 100.0  # plausible microns per pixel of a slide's level 0
DEFAULT_MAX_SLIDE_PIXELS = 250_000 * 250_000  # level-0 pixels; larger is refused (413)
DEFAULT_MAX_TISSUE_TILES = 200_000  # tissue tiles of one map; more is refused (413)
MASK_PX = 8  # thumbnail pixels per tile side for the tissue mask
MAX_READ_SIDE = 4096  # pixels per side of one read of the mask; bounds its memory
DZI_TILE, DZI_OVERLAP, DZI_FORMAT = 254, 1, "jpeg"
DZI_QUALITY = 80
OPEN_SLIDES = 8  # slides kept open by the web app (file handles and OpenSlide's tile cache)
OVERLAY_MAX_SIDE = 1024  # the probability overlay image (tiles drawn as blocks)
OVERLAY_MAX_TILE = 16  # pixels per tile side in it: enough for crisp block edges when zoomed
MARKS_MAX_SIDE = 3072  # the refer outlines: finer than the overlay, light enough for a phone
PICTURE_SIDE = 1024  # the command line's map picture
BACKGROUND_RGB = (255, 255, 255)  # outside the slide's scanned area (OpenSlide: transparent)

# Per-tile status codes of the grid (the JSON keeps webapp.tiling's words).
BACKGROUND, TISSUE, ASSESSED, UNCERTAIN, FLAGGED = 0, 1, 2, 3, 4
STATUS_NAMES = {
    BACKGROUND: tiling.STATUS_BACKGROUND,
    TISSUE: tiling.STATUS_TISSUE,
    ASSESSED: tiling.STATUS_ASSESSED,
    UNCERTAIN: tiling.STATUS_UNCERTAIN,
    FLAGGED: tiling.STATUS_FLAGGED,
}
FLAGGED_RGBA = tiling.FLAGGED_COLOUR + (255,)
FLAGGED_FILL_ALPHA = 190  # not-assessed tiles: grey, the tissue faintly through it
QUPATH_COLOURS = {
    "positive": [224, 32, 27],
    "uncertain": [245, 229, 10],
    "flagged": [128, 128, 128],
    "region": [0, 0, 0],
}


class SlideError(errors.UserError):
    """A slide that cannot be mapped as asked: one line, exit 2, ``http_status`` 400/404/413;
    ``needs_mpp`` where giving the level-0 resolution would open it (the page asks for it)."""

    def __init__(self, message: str, http_status: int = 400, needs_mpp: bool = False):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.needs_mpp = needs_mpp


@dataclasses.dataclass(frozen=True)
class SlideInfo:
    """What the slide says about itself.

    Attributes:
        path, name: the file and its base name.
        vendor: OpenSlide's format name (aperio, generic-tiff, ...).
        width, height: level-0 pixels.
        mpp: level-0 microns per pixel (x; y where it differs is ignored: square pixels).
        mpp_source: where ``mpp`` came from ("slide metadata", "TIFF resolution tags", "given").
        levels: (width, height, downsample) of each pyramid level.
        objective: the scanner's objective power where the slide names it.
    """

    path: str
    name: str
    vendor: str
    width: int
    height: int
    mpp: float
    mpp_source: str
    levels: tuple[tuple[int, int, float], ...]
    objective: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vendor": self.vendor,
            "width": self.width,
            "height": self.height,
            "mpp": round(self.mpp, 5),
            "mpp_source": self.mpp_source,
            "objective": self.objective,
            "levels": [
                {"width": w, "height": h, "downsample": round(d, 3)} for w, h, d in self.levels
            ],
        }


@dataclasses.dataclass(frozen=True)
class LevelChoice:
    """Where the model's tiles are read.

    Attributes:
        level: the pyramid level read.
        level_mpp: its microns per pixel.
        target_mpp: the model's (the card's) microns per pixel.
        tile_level: one model tile's side in the level's pixels (``patch`` when no resampling).
        tile_l0: one model tile's side in level-0 pixels.
        resample: whether regions are area-averaged down to the model's scale.
    """

    level: int
    level_mpp: float
    target_mpp: float
    tile_level: float
    tile_l0: float
    resample: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "level_mpp": round(self.level_mpp, 5),
            "target_mpp": self.target_mpp,
            "tile_level_px": round(self.tile_level, 3),
            "tile_l0_px": round(self.tile_l0, 3),
            "resample": self.resample,
        }


def _openslide():
    import openslide

    return openslide


def is_slide_path(path: str) -> bool:
    """Whether ``path`` names a slide by its suffix or by what OpenSlide recognises in it.

    A plain image (PNG, JPEG, a strip TIFF) is not one: it goes through the upload checks."""
    if path.lower().endswith(VENDOR_SUFFIXES):  # a plain .tif may be an image: OpenSlide decides
        return True
    try:
        return bool(os.path.isfile(path) and _openslide().OpenSlide.detect_format(path))
    except Exception:  # OpenSlide raises for unreadable files: not a slide then
        return False


_OME_PIXELS = re.compile(r"<(?:\w+:)?Pixels\b[^>]*>")
# Micrometres in each OME length unit a slide's pixel size is given in (micro sign or Greek mu).
_OME_UNITS = {"\u00b5m": 1.0, "\u03bcm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}


def _ome_mpp(description: str) -> float | None:
    """Microns per pixel from the first image's OME-XML ``Pixels`` element (``PhysicalSizeX``
    in ``PhysicalSizeXUnit``, micrometres by default), or None. Read with a regular expression:
    the XML is the file's, and no entity in it is expanded."""
    if "<OME" not in description[:4096]:
        return None
    pixels = _OME_PIXELS.search(description)
    if not pixels:
        return None
    attributes = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(0)))
    scale = _OME_UNITS.get(attributes.get("PhysicalSizeXUnit", "um").strip())
    try:
        size = float(attributes.get("PhysicalSizeX") or 0)
    except ValueError:
        return None
    return size * scale if scale and size > 0 else None


def read_mpp(properties: dict[str, str]) -> tuple[float, str] | None:
    """(microns per pixel, source) from OpenSlide's properties, or None when the slide has none.

    An OME-TIFF's OME-XML ``PhysicalSizeX`` first (OpenSlide reads such a file as a generic
    TIFF and knows nothing of OME; its TIFF resolution tags are often a writer's 72 dpi), then
    OpenSlide's own ``openslide.mpp-x`` (Aperio's MPP, vendors' fields), then the TIFF
    resolution tags (``tiff.XResolution`` in pixels per ``tiff.ResolutionUnit``)."""
    ome = _ome_mpp(properties.get("tiff.ImageDescription") or "")
    if ome is not None:
        return ome, "OME-XML"
    value = properties.get("openslide.mpp-x")
    if value:
        try:
            mpp = float(value)
            if mpp > 0:
                return mpp, "slide metadata"
        except ValueError:
            pass
    unit = (properties.get("tiff.ResolutionUnit") or "").lower()
    per_unit = {"centimeter": 1e4, "inch": 25400.0, "millimeter": 1e3, "micrometer": 1.0}.get(unit)
    try:
        resolution = float(properties.get("tiff.XResolution") or 0)
    except ValueError:
        resolution = 0.0
    if per_unit and resolution > 0:
        return per_unit / resolution, "TIFF resolution tags"
    return None


def open_slide(
    path: str, mpp: float | None = None, max_pixels: int = DEFAULT_MAX_SLIDE_PIXELS
) -> tuple[Any, SlideInfo]:
    """The open slide (an ``openslide.OpenSlide``) and its :class:`SlideInfo`.

    Args:
        path: the slide file.
        mpp: level-0 microns per pixel to use where the slide holds none (``--mpp``); the
            slide's own value wins when it has one.
        max_pixels: refuse slides with more level-0 pixels.

    Raises:
        SlideError: no such file (404), not a slide OpenSlide reads (400), no resolution
            metadata and no ``mpp`` given (400), implausible resolution (400), too large (413).
    """
    openslide = _openslide()
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise SlideError(f"{name}: no such slide file", 404)
    try:
        vendor = openslide.OpenSlide.detect_format(path)
    except Exception:
        vendor = None
    if not vendor:
        raise SlideError(
            f"{name}: not a whole-slide image OpenSlide reads (Aperio SVS, tiled "
            "pyramidal TIFF, Hamamatsu, MIRAX, Leica, Ventana, DICOM WSI)"
        )
    try:
        slide = openslide.OpenSlide(path)
    except openslide.OpenSlideError as err:
        raise SlideError(f"{name}: a {vendor} slide OpenSlide cannot open ({err})") from None
    properties = dict(slide.properties)
    found = read_mpp(properties)
    if found is None and mpp is None:
        slide.close()
        raise SlideError(
            f"{name}: the slide holds no resolution metadata (microns per pixel); give the "
            "scan's level-0 resolution with --mpp (e.g. --mpp 0.25 for a 40x scan)",
            needs_mpp=True,
        )
    value, source = found if found is not None else (float(mpp), "given")
    if not MIN_MPP <= value <= MAX_MPP:
        slide.close()
        raise SlideError(
            f"{name}: {value:g} microns per pixel ({source}) is not a plausible slide "
            f"resolution ({MIN_MPP:g} to {MAX_MPP:g}); give the right one with --mpp",
            needs_mpp=True,
        )
    width, height = slide.dimensions
    if width * height > max_pixels:
        slide.close()
        raise SlideError(
            f"{name}: {width:,} x {height:,} pixels is larger than the limit of "
            f"{max_pixels:,} pixels at level 0",
            413,
        )
    try:
        objective = float(properties.get("openslide.objective-power") or 0) or None
    except ValueError:
        objective = None
    levels = tuple(
        (int(w), int(h), float(d))
        for (w, h), d in zip(slide.level_dimensions, slide.level_downsamples)
    )
    return slide, SlideInfo(
        os.path.abspath(path),
        name,
        vendor,
        int(width),
        int(height),
        value,
        source,
        levels,
        objective,
    )


def choose_level(info: SlideInfo, target_mpp: float, patch: int) -> LevelChoice:
    """The coarsest level no coarser than the model's scale (within :data:`MPP_TOLERANCE`).

    Raises:
        SlideError: the slide's level 0 is coarser than the model's scale (it cannot be
            mapped at the scale the model learnt).
    """
    tile_l0 = patch * target_mpp / info.mpp
    best = None
    for index, (_, _, downsample) in enumerate(info.levels):
        if info.mpp * downsample <= target_mpp * (1 + MPP_TOLERANCE):
            if best is None or downsample > info.levels[best][2]:
                best = index
    if best is None:
        raise SlideError(
            f"{info.name}: scanned at {info.mpp:g} microns per pixel, coarser than the "
            f"model's {target_mpp:g}; it cannot be read at the scale the model learnt"
        )
    level_mpp = info.mpp * info.levels[best][2]
    resample = abs(level_mpp / target_mpp - 1) > MPP_TOLERANCE
    tile_level = patch * target_mpp / level_mpp if resample else float(patch)
    return LevelChoice(
        best,
        level_mpp,
        float(target_mpp),
        tile_level,
        tile_l0 if resample else patch * info.levels[best][2],
        resample,
    )


def _rgb(region: Image.Image) -> np.ndarray:
    """OpenSlide's RGBA (transparent outside the scanned area) on white, uint8 [H, W, 3]."""
    canvas = Image.new("RGB", region.size, BACKGROUND_RGB)
    canvas.paste(region, mask=region.getchannel("A"))
    return np.asarray(canvas)


def grid_shape(info: SlideInfo, choice: LevelChoice) -> tuple[int, int]:
    """(rows, cols) of whole model tiles on the slide; a last partial strip is left out."""
    return int(info.height // choice.tile_l0), int(info.width // choice.tile_l0)


def tissue_mask(slide: Any, info: SlideInfo, choice: LevelChoice) -> np.ndarray:
    """[rows, cols] fraction of tissue pixels per model tile, from a low-resolution read.

    Each tile is measured on :data:`MASK_PX` x :data:`MASK_PX` thumbnail pixels read from the
    coarsest level that still has them, in blocks of at most :data:`MAX_READ_SIDE` pixels."""
    rows, cols = grid_shape(info, choice)
    fractions = np.zeros((rows, cols), np.float32)
    level = slide.get_best_level_for_downsample(choice.tile_l0 / MASK_PX)
    downsample = info.levels[level][2]
    tile_at_level = choice.tile_l0 / downsample
    block = max(1, int(MAX_READ_SIDE // max(tile_at_level, 1.0)))
    for r0 in range(0, rows, block):
        r1 = min(rows, r0 + block)
        for c0 in range(0, cols, block):
            c1 = min(cols, c0 + block)
            size = (
                max(1, math.ceil((c1 - c0) * tile_at_level)),
                max(1, math.ceil((r1 - r0) * tile_at_level)),
            )
            region = slide.read_region(
                (round(c0 * choice.tile_l0), round(r0 * choice.tile_l0)), level, size
            )
            small = Image.fromarray(_rgb(region)).resize(
                ((c1 - c0) * MASK_PX, (r1 - r0) * MASK_PX), Image.BOX
            )
            rgb = np.asarray(small)
            xs, ys = range(0, rgb.shape[1], MASK_PX), range(0, rgb.shape[0], MASK_PX)
            fractions[r0:r1, c0:c1] = tiling.tissue_fractions(rgb, xs, ys, MASK_PX)
    return fractions


def tissue_tiles(
    slide: Any, choice: LevelChoice, patch: int, tissue: np.ndarray, min_tissue: float
) -> Iterator[tuple[int, int, bytes]]:
    """(row, col, PNG bytes at the model's patch size) of every tissue tile, band by band.

    One read per row of tiles, from its first to its last tissue tile: memory is one band."""
    for row in range(tissue.shape[0]):
        cols = np.flatnonzero(tissue[row] >= min_tissue)
        if cols.size == 0:
            continue
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        size = (max(1, round((c1 - c0) * choice.tile_level)), max(1, round(choice.tile_level)))
        region = slide.read_region(
            (round(c0 * choice.tile_l0), round(row * choice.tile_l0)), choice.level, size
        )
        band = Image.fromarray(_rgb(region))
        if band.size != ((c1 - c0) * patch, patch):
            band = band.resize(((c1 - c0) * patch, patch), Image.BOX)
        pixels = np.asarray(band)
        for col in cols:
            x = (int(col) - c0) * patch
            yield row, int(col), tiling.encode_tile(np.ascontiguousarray(pixels[:, x : x + patch]))


@dataclasses.dataclass
class SlideMap:
    """A slide's answer: per-tile grids (row-major, model-scale tiles) and what they add up to.

    ``status`` holds :data:`BACKGROUND`...:data:`FLAGGED`; ``probability`` is NaN where no
    probability was given (background, flagged); ``positive`` marks tiles called positive."""

    info: SlideInfo
    choice: LevelChoice
    patch: int
    tissue: np.ndarray
    status: np.ndarray
    probability: np.ndarray
    positive: np.ndarray
    reasons: dict[tuple[int, int], str]
    positive_class: str | None
    model_name: str | None
    model_version: str | None
    timings: dict[str, float]

    @property
    def rows(self) -> int:
        return int(self.status.shape[0])

    @property
    def cols(self) -> int:
        return int(self.status.shape[1])

    def counts(self) -> dict[str, int]:
        counts = {"tiles": int(self.status.size)}
        for code in (BACKGROUND, ASSESSED, UNCERTAIN, FLAGGED):
            counts[STATUS_NAMES[code]] = int((self.status == code).sum())
        counts["positive"] = int((self.positive & (self.status == ASSESSED)).sum())
        return counts

    def box(self, row: int, col: int) -> dict[str, int]:
        """A tile's box in level-0 pixels."""
        x0, y0 = round(col * self.choice.tile_l0), round(row * self.choice.tile_l0)
        return {
            "x": x0,
            "y": y0,
            "width": round((col + 1) * self.choice.tile_l0) - x0,
            "height": round((row + 1) * self.choice.tile_l0) - y0,
        }

    def top_regions(self, k: int = tiling.TOP_REGIONS) -> list[dict[str, Any]]:
        """The ``k`` answered tiles with the highest positive probability, as level-0 boxes."""
        answered = (self.status == ASSESSED) | (self.status == UNCERTAIN)
        flat = np.where(answered, np.nan_to_num(self.probability, nan=-1.0), -2.0).ravel()
        order = np.argsort(-flat, kind="stable")[:k]
        regions = []
        for rank, index in enumerate(i for i in order if flat[i] > -2.0):
            row, col = divmod(int(index), self.cols)
            regions.append(
                {
                    "rank": rank + 1,
                    **self.box(row, col),
                    "row": row,
                    "col": col,
                    "positive_probability": round(
                        float(self.probability[row, col]), tiling.PROBABILITY_DIGITS
                    ),
                    "positive": bool(self.positive[row, col]),
                    "status": STATUS_NAMES[int(self.status[row, col])],
                }
            )
        return regions

    def grid(self) -> list[list[float | None]]:
        answered = (self.status == ASSESSED) | (self.status == UNCERTAIN)
        return [
            [
                round(float(p), tiling.PROBABILITY_DIGITS) if ok else None
                for p, ok in zip(prow, arow)
            ]
            for prow, arow in zip(self.probability, answered)
        ]

    def refer(self) -> list[dict[str, Any]]:
        """Uncertain tiles ("refer to a pathologist") and flagged ones, with level-0 boxes."""
        out = []
        for row, col in zip(*np.nonzero((self.status == UNCERTAIN) | (self.status == FLAGGED))):
            row, col = int(row), int(col)
            out.append(
                {
                    "row": row,
                    "col": col,
                    **self.box(row, col),
                    "status": STATUS_NAMES[int(self.status[row, col])],
                    "reason": self.reasons.get((row, col)),
                }
            )
        return out

    def as_dict(self, with_grid: bool = True) -> dict[str, Any]:
        """The JSON body (``breastdx predict``'s .map.json, ``POST /api/slides/<name>/map``)."""
        body = {
            "slide": self.info.as_dict(),
            "level": self.choice.as_dict(),
            "patch": self.patch,
            "rows": self.rows,
            "cols": self.cols,
            "counts": self.counts(),
            "top_regions": self.top_regions(),
            "refer": self.refer(),
            "positive_class": self.positive_class,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "seconds": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if with_grid:
            body["grid"] = self.grid()
        return body

    def geojson(self) -> dict[str, Any]:
        """A FeatureCollection in level-0 pixels that QuPath imports (File > Import objects):
        each positive, uncertain and not-assessed tile as a classified detection with its
        probability, and the top regions as annotations."""

        def square(box: dict[str, int]) -> dict[str, Any]:
            x0, y0, x1, y1 = box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]
            return {
                "type": "Polygon",
                "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
            }

        features = []
        label = {
            "positive": self.positive_class or "positive",
            "uncertain": "Uncertain: refer to a pathologist",
            "flagged": "Not assessed",
        }
        for row, col in zip(*np.nonzero(self.status >= ASSESSED)):
            row, col = int(row), int(col)
            code = int(self.status[row, col])
            kind = (
                "flagged"
                if code == FLAGGED
                else "uncertain"
                if code == UNCERTAIN
                else "positive"
                if self.positive[row, col]
                else None
            )
            if kind is None:
                continue
            measurements = (
                {}
                if code == FLAGGED
                else {
                    "P(positive)": round(
                        float(self.probability[row, col]), tiling.PROBABILITY_DIGITS
                    )
                }
            )
            properties = {
                "objectType": "detection",
                "classification": {"name": label[kind], "color": QUPATH_COLOURS[kind]},
                "measurements": measurements,
                "row": row,
                "col": col,
            }
            if code == FLAGGED and (row, col) in self.reasons:
                properties["reason"] = self.reasons[(row, col)]
            features.append(
                {
                    "type": "Feature",
                    "geometry": square(self.box(row, col)),
                    "properties": properties,
                }
            )
        for region in self.top_regions():
            features.append(
                {
                    "type": "Feature",
                    "geometry": square(region),
                    "properties": {
                        "objectType": "annotation",
                        "name": f"region {region['rank']}: "
                        f"P = {region['positive_probability']:.3f}",
                        "classification": {
                            "name": "Most suspicious region",
                            "color": QUPATH_COLOURS["region"],
                        },
                        "measurements": {"P(positive)": region["positive_probability"]},
                    },
                }
            )
        return {
            "type": "FeatureCollection",
            "features": features,
            "properties": {
                "slide": self.info.name,
                "model_name": self.model_name,
                "model_version": self.model_version,
                "coordinates": "level-0 pixels",
                "note": "Research use only, not a diagnosis.",
            },
        }

    def bounds(self) -> list[int]:
        """[x, y, width, height] in level-0 pixels that the overlay and marks cover."""
        return [
            0,
            0,
            round(self.cols * self.choice.tile_l0),
            round(self.rows * self.choice.tile_l0),
        ]

    def overlay_png(self, max_side: int = OVERLAY_MAX_SIDE) -> bytes:
        """RGBA PNG: answered tiles coloured by P(positive) (webapp.overlay's colours), flagged
        tiles grey, the rest transparent; each tile a block of whole pixels."""
        per_tile = max(1, min(OVERLAY_MAX_TILE, max_side // max(self.rows, self.cols, 1)))
        answered = (self.status == ASSESSED) | (self.status == UNCERTAIN)
        levels = Image.fromarray(
            (np.clip(np.nan_to_num(self.probability), 0, 1) * overlay.BYTE_MAX).astype(np.uint8)
        )
        rgb = np.array(
            ImageOps.colorize(levels, black=overlay.COLD, mid=overlay.WARM, white=overlay.HOT)
        )
        flagged = self.status == FLAGGED
        rgb[flagged] = tiling.FLAGGED_COLOUR
        alpha = np.where(answered | flagged, 255, 0).astype(np.uint8)
        image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
        image = image.resize((self.cols * per_tile, self.rows * per_tile), Image.NEAREST)
        return _png(image)

    def marks_png(self, max_side: int = MARKS_MAX_SIDE) -> bytes:
        """RGBA PNG: the dashed black-over-white outline of each uncertain ("refer") tile, as
        on the whole-image map and in the viewer's legend, and each not-assessed tile filled
        grey (the legend's grey square); transparent elsewhere."""
        per_tile = max(4, min(64, max_side // max(self.rows, self.cols, 1)))
        image = Image.new("RGBA", (self.cols * per_tile, self.rows * per_tile), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        for row, col in zip(*np.nonzero(self.status == UNCERTAIN)):
            x0, y0 = int(col) * per_tile, int(row) * per_tile
            tiling.dashed_box(draw, x0, y0, x0 + per_tile - 1, y0 + per_tile - 1)
        for row, col in zip(*np.nonzero(self.status == FLAGGED)):
            x0, y0 = int(col) * per_tile, int(row) * per_tile
            draw.rectangle(
                [x0, y0, x0 + per_tile - 1, y0 + per_tile - 1],
                fill=FLAGGED_RGBA[:3] + (FLAGGED_FILL_ALPHA,),
                outline=FLAGGED_RGBA,
            )
        return _png(image)

    def render_png(self, slide: Any, research_only: str, side: int = PICTURE_SIDE) -> bytes:
        """The slide's thumbnail with the map blended in, refer tiles outlined, the top regions
        boxed and numbered, above webapp.tiling's legend; PNG bytes."""
        level = len(self.info.levels) - 1  # the coarsest level at least `side` long, read whole
        while level > 0 and max(self.info.levels[level][:2]) < min(
            side, max(self.info.width, self.info.height)
        ):
            level -= 1
        thumb = Image.fromarray(_rgb(slide.read_region((0, 0), level, self.info.levels[level][:2])))
        thumb.thumbnail((side, side), Image.BOX)
        scale = thumb.width / self.info.width
        picture = thumb.copy()
        tinted = Image.open(io.BytesIO(self.overlay_png())).resize(
            (max(1, round(self.bounds()[2] * scale)), max(1, round(self.bounds()[3] * scale))),
            Image.NEAREST,
        )
        faded = Image.new("RGBA", tinted.size, (0, 0, 0, 0))
        faded = Image.blend(faded, tinted, tiling.MAP_ALPHA)
        picture.paste(faded, (0, 0), faded)
        draw = ImageDraw.Draw(picture)
        for item in self.refer():
            if item["status"] == tiling.STATUS_UNCERTAIN:
                draw.rectangle(
                    [
                        item["x"] * scale,
                        item["y"] * scale,
                        (item["x"] + item["width"]) * scale,
                        (item["y"] + item["height"]) * scale,
                    ],
                    outline=(0, 0, 0),
                )
        for region in self.top_regions():
            box = [
                region["x"] * scale - 2,
                region["y"] * scale - 2,
                (region["x"] + region["width"]) * scale + 2,
                (region["y"] + region["height"]) * scale + 2,
            ]
            draw.rectangle(box, outline=tiling.BOX_COLOUR, width=2)
            draw.text((box[2] + 2, box[1]), str(region["rank"]), fill=tiling.BOX_COLOUR)
        return tiling.with_legend(picture, self.positive_class, self.counts(), research_only)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def map_slide(
    slide: Any,
    info: SlideInfo,
    predict: Callable[[list[bytes]], list[Any]],
    *,
    patch: int,
    target_mpp: float,
    card: dict[str, Any] | None = None,
    positive_class: str | None = None,
    threshold: float = 0.5,
    model_name: str | None = None,
    batch: int = tiling.DEFAULT_BATCH,
    workers: int = tiling.DEFAULT_WORKERS,
    min_tissue: float = tiling.MIN_TISSUE_FRACTION,
    max_tiles: int = DEFAULT_MAX_TISSUE_TILES,
    progress: Callable[[int, int], None] | None = None,
) -> SlideMap:
    """Maps a slide: level choice, tissue mask, then tissue tiles through ``predict`` in batches.

    Args:
        slide, info: from :func:`open_slide`.
        predict: sends a batch of encoded tiles to the model (``webapp.clients`` objects back).
        patch: the model's native patch side (IDC 50); target_mpp: its microns per pixel.
        card: the served version's card, for its decision rule where the server sends none.
        positive_class, threshold, model_name: as ``webapp.tiling.map_image``.
        batch: tiles per request; workers: requests in flight (at most 2 x workers batches
            are held at once: bounded memory).
        min_tissue: tissue fraction below which a tile is background.
        max_tiles: refuse slides with more tissue tiles than this.
        progress: called with (tiles done, tissue tiles) after each batch.

    Raises:
        SlideError: the slide is coarser than the model's scale, smaller than one tile, or has
            more tissue tiles than ``max_tiles`` (413).
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    choice = choose_level(info, target_mpp, patch)
    rows, cols = grid_shape(info, choice)
    if rows == 0 or cols == 0:
        raise SlideError(
            f"{info.name}: {info.width} x {info.height} pixels is smaller than one "
            f"{patch} px tile at {target_mpp:g} microns per pixel"
        )
    tissue = tissue_mask(slide, info, choice)
    timings["mask"] = time.perf_counter() - started
    status = np.where(tissue >= min_tissue, TISSUE, BACKGROUND).astype(np.int8)
    wanted = int((status == TISSUE).sum())
    if wanted > max_tiles:
        raise SlideError(
            f"{info.name}: {wanted:,} tissue tiles of {patch} px at {target_mpp:g} microns per "
            f"pixel; at most {max_tiles:,} per map",
            413,
        )
    probability = np.full((rows, cols), np.nan, np.float32)
    positive = np.zeros((rows, cols), bool)
    reasons: dict[tuple[int, int], str] = {}
    version: list[str | None] = [None]
    done = [0]
    lock = threading.Lock()

    def settle(items: Sequence[tuple[int, int, bytes]], answers: Sequence[Any]) -> None:
        if len(answers) != len(items):
            raise SlideError(f"the model answered {len(answers)} of {len(items)} tiles", 502)
        with lock:
            for (row, col, data), answer in zip(items, answers):
                code, called, reason = tiling.decision(
                    answer, threshold, positive_class, card, data
                )
                version[0] = getattr(answer, "model_version", version[0])
                status[row, col] = {
                    tiling.STATUS_FLAGGED: FLAGGED,
                    tiling.STATUS_UNCERTAIN: UNCERTAIN,
                }.get(code, ASSESSED)
                if code == tiling.STATUS_FLAGGED:
                    reasons[(row, col)] = str(reason)
                    continue
                probability[row, col] = float(answer.positive_probability)
                positive[row, col] = bool(called)
            done[0] += len(items)
        if progress is not None:
            progress(done[0], wanted)

    tiles_started = time.perf_counter()
    in_flight: collections.deque = collections.deque()
    reading = 0.0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: list[tuple[int, int, bytes]] = []
        source = tissue_tiles(slide, choice, patch, tissue, min_tissue)
        while True:
            read_started = time.perf_counter()
            item = next(source, None)
            reading += time.perf_counter() - read_started
            if item is not None:
                pending.append(item)
            if pending and (len(pending) >= batch or item is None):
                items, pending = pending, []
                in_flight.append((items, pool.submit(predict, [data for _, _, data in items])))
                while len(in_flight) > 2 * max(1, workers):  # bounded memory: wait for the oldest
                    items_done, future = in_flight.popleft()
                    settle(items_done, future.result())
            if item is None:
                break
        while in_flight:
            items_done, future = in_flight.popleft()
            settle(items_done, future.result())
    timings["read_tiles"] = reading
    timings["tiles"] = time.perf_counter() - tiles_started
    timings["total"] = time.perf_counter() - started
    return SlideMap(
        info,
        choice,
        patch,
        tissue,
        status,
        probability,
        positive,
        reasons,
        positive_class,
        model_name,
        version[0],
        timings,
    )


# --- the viewer's deep-zoom tiles ------------------------------------------------------------
class SlideCache:
    """A few open slides and their DeepZoom generators, shared by the web app's threads
    (OpenSlide reads are thread-safe); the least recently used is closed first."""

    def __init__(self, size: int = OPEN_SLIDES):
        self.size = size
        # (path, modification time, given mpp) -> (slide, info, DeepZoomGenerator)
        self._items: collections.OrderedDict[tuple, tuple[Any, SlideInfo, Any]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(
        self, path: str, mpp: float | None = None, max_pixels: int = DEFAULT_MAX_SLIDE_PIXELS
    ) -> tuple[Any, SlideInfo, Any]:
        """(slide, info, DeepZoomGenerator) for ``path``; reopened when the file changed."""
        try:
            key = (os.path.abspath(path), os.path.getmtime(path), mpp)
        except OSError:
            raise SlideError(f"{os.path.basename(path)}: no such slide file", 404) from None
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        slide, info = open_slide(path, mpp=mpp, max_pixels=max_pixels)
        from openslide.deepzoom import DeepZoomGenerator

        deepzoom = DeepZoomGenerator(
            slide, tile_size=DZI_TILE, overlap=DZI_OVERLAP, limit_bounds=False
        )
        with self._lock:
            self._items[key] = (slide, info, deepzoom)
            while len(self._items) > self.size:
                _, (old, _, _) = self._items.popitem(last=False)
                old.close()
        return slide, info, deepzoom


def dzi_xml(deepzoom: Any) -> str:
    return deepzoom.get_dzi(DZI_FORMAT)


def dzi_tile(deepzoom: Any, level: int, col: int, row: int) -> bytes:
    """One DeepZoom tile as JPEG bytes.

    Raises:
        SlideError: 404 for a level or address outside the pyramid."""
    if not 0 <= level < deepzoom.level_count:
        raise SlideError(f"no deep-zoom level {level} (the slide has {deepzoom.level_count})", 404)
    cols, rows = deepzoom.level_tiles[level]
    if not (0 <= col < cols and 0 <= row < rows):
        raise SlideError(
            f"no tile {col}_{row} at deep-zoom level {level} ({cols} x {rows} tiles)", 404
        )
    tile = deepzoom.get_tile(level, (col, row)).convert("RGB")
    buffer = io.BytesIO()
    tile.save(buffer, format="JPEG", quality=DZI_QUALITY)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def openslide_versions() -> dict[str, str]:
    openslide = _openslide()
    return {"openslide-python": openslide.__version__, "openslide": openslide.__library_version__}
