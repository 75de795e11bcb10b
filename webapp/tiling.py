"""Whole images: tiles, a tissue mask, a probability map, its picture and legend.

``webapp.wholeslide`` (the ``/map`` page and ``POST /api/map``), ``breastdx_cli.predict``
(``breastdx predict --map``) and ``bench/tiling.py`` call :func:`map_image` and
:func:`render_map`. An image larger than the model's patch is cut into patch-sized tiles
(stride configurable); tiles that are mostly background (bright, unsaturated glass) are
skipped; the rest are cropped *at their native size* and sent, PNG-encoded, in batches to
the model server's ``:predict`` like any upload, so the model's own graph decodes, pads
and scales them. This process never resizes or normalises a pixel for the model; NumPy
only measures tissue and Pillow only crops, encodes and draws the picture a person sees.

Each tile's answer is the model's: its positive probability and, where the server adds
them, its decision fields (a tile the server answers "not assessed" is *flagged*, never
given a class here). Only numpy and Pillow: no TensorFlow.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from breastdx_core import errors
from webapp import overlay

# A pixel is tissue when it is darker or more saturated than slide glass. H&E background
# is bright (> ~215 in every channel) and grey; stained tissue is pink to purple.
GLASS_LEVEL = 215
MIN_SATURATION = 0.07  # (max - min) / max of a pixel's channels
MIN_TISSUE_FRACTION = 0.2  # a tile with less tissue than this is background
DEFAULT_MAX_TILES = 4096  # a 3,200 x 3,200 image at stride 50; more is refused (413)
DEFAULT_BATCH = (
    256  # tiles per :predict request (measured: 128 -> 256 saves ~15 % of a 1,000-tile map)
)
DEFAULT_WORKERS = 2  # concurrent :predict requests (the server batches them together)
TOP_REGIONS = 5
MAX_STRIDE_FACTOR = 4  # a stride past 4 patches leaves most of the image unseen
PNG_LEVEL = (
    0  # tiles are encoded for transport only: stored, not compressed (half the cost of level 1)
)
PROBABILITY_DIGITS = 4

STATUS_BACKGROUND = "background"  # skipped by the tissue mask, never sent
STATUS_TISSUE = "tissue"  # to be sent
STATUS_ASSESSED = "assessed"  # the model answered one class
STATUS_UNCERTAIN = (
    "uncertain"  # the server's conformal set held several classes: refer to a pathologist
)
STATUS_FLAGGED = "flagged"  # the server answered "not assessed" (input contract, OOD score)
ANSWERED = (STATUS_ASSESSED, STATUS_UNCERTAIN)  # tiles with a probability on the map
NOT_ASSESSED_STATUS = 422  # HTTP: a readable image the model must not answer about
# breastdx_core/decision.py's statuses, as the model server adds them to each :predict row
SERVER_NOT_ASSESSED = "not_assessed"
SERVER_UNCERTAIN = "uncertain"


class TilingError(errors.UserError):
    """An image that cannot be tiled as asked; ``status`` is the HTTP status (400/413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status
        self.http_status = status


@dataclasses.dataclass(frozen=True)
class TileSettings:
    """How an image is cut.

    Attributes:
        patch: tile side in image pixels (the model's native patch: 50 for IDC).
        stride: step between tiles (``patch`` for non-overlapping tiles).
        max_tiles: refuse images that need more tiles than this (after the tissue mask).
        min_tissue: fraction of tissue pixels below which a tile is background.
        batch: tiles per request; workers: requests in flight.
    """

    patch: int
    stride: int
    max_tiles: int = DEFAULT_MAX_TILES
    min_tissue: float = MIN_TISSUE_FRACTION
    batch: int = DEFAULT_BATCH
    workers: int = DEFAULT_WORKERS

    def __post_init__(self):
        if self.patch < 1 or self.stride < 1:
            raise TilingError(
                f"patch and stride must be positive pixels; got patch={self.patch}, "
                f"stride={self.stride}"
            )
        if self.stride > self.patch * MAX_STRIDE_FACTOR:
            raise TilingError(
                f"stride {self.stride} leaves most of the image unseen; use at most "
                f"{MAX_STRIDE_FACTOR} x the patch ({self.patch * MAX_STRIDE_FACTOR})"
            )


@dataclasses.dataclass
class Tile:
    """One tile: its place, what the tissue mask found and what the model said."""

    row: int
    col: int
    x: int
    y: int
    tissue: float
    status: str = STATUS_BACKGROUND
    positive_probability: float | None = None
    class_name: str | None = None
    positive: bool = False
    reason: str | None = None


@dataclasses.dataclass
class TileMap:
    """A whole image's answer: the tiles on a grid and what they add up to."""

    width: int
    height: int
    settings: TileSettings
    rows: int
    cols: int
    tiles: list[Tile]
    positive_class: str | None
    model_name: str | None
    model_version: str | None
    seconds: float = 0.0

    def grid(self) -> list[list[float | None]]:
        """[rows][cols] positive probability; None where the tile was background or flagged."""
        out: list[list[float | None]] = [[None] * self.cols for _ in range(self.rows)]
        for tile in self.tiles:
            if tile.status in ANSWERED:
                out[tile.row][tile.col] = tile.positive_probability
        return out

    def counts(self) -> dict[str, int]:
        return status_counts(self.tiles, {"tiles": len(self.tiles)})

    def top_regions(self, k: int = TOP_REGIONS) -> list[dict[str, Any]]:
        """The ``k`` answered tiles with the highest positive probability, as image boxes."""
        answered = sorted(
            (t for t in self.tiles if t.status in ANSWERED),
            key=lambda t: -(t.positive_probability or 0.0),
        )
        return [
            {
                "rank": i + 1,
                "x": t.x,
                "y": t.y,
                "width": self.settings.patch,
                "height": self.settings.patch,
                "row": t.row,
                "col": t.col,
                "positive_probability": t.positive_probability,
                "positive": t.positive,
                "status": t.status,
            }
            for i, t in enumerate(answered[:k])
        ]

    def as_dict(self) -> dict[str, Any]:
        """The JSON API's body (without the picture)."""
        return {
            "width": self.width,
            "height": self.height,
            "patch": self.settings.patch,
            "stride": self.settings.stride,
            "rows": self.rows,
            "cols": self.cols,
            "grid": self.grid(),
            "counts": self.counts(),
            "top_regions": self.top_regions(),
            "flagged": [
                {"row": t.row, "col": t.col, "x": t.x, "y": t.y, "reason": t.reason}
                for t in self.tiles
                if t.status == STATUS_FLAGGED
            ],
            "refer": [
                {
                    "row": t.row,
                    "col": t.col,
                    "x": t.x,
                    "y": t.y,
                    "width": self.settings.patch,
                    "height": self.settings.patch,
                    "positive_probability": t.positive_probability,
                }
                for t in self.tiles
                if t.status == STATUS_UNCERTAIN
            ],
            "positive_class": self.positive_class,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "seconds": round(self.seconds, 3),
        }


def status_counts(items: Sequence[Any], counts: dict[str, int]) -> dict[str, int]:
    """Tiles (or mosaic patches) by status, and how many were called positive."""
    for status in (STATUS_BACKGROUND, STATUS_ASSESSED, STATUS_UNCERTAIN, STATUS_FLAGGED):
        counts[status] = sum(item.status == status for item in items)
    counts["positive"] = sum(item.positive for item in items if item.status == STATUS_ASSESSED)
    return counts


def grid_tiles(width: int, height: int, patch: int, stride: int) -> int:
    """How many tiles (tissue or not) cover a ``width`` x ``height`` image."""

    def count(size: int) -> int:
        if size <= patch:
            return 1
        starts = (size - patch) // stride + 1
        return starts + (0 if (starts - 1) * stride == size - patch else 1)

    return count(width) * count(height)


def smallest_stride(width: int, height: int, patch: int, max_grid: int) -> int:
    """The smallest stride whose grid has at most ``max_grid`` tiles."""
    stride = max(
        1, int(math.sqrt(max(width - patch, 1) * max(height - patch, 1) / max(max_grid, 1)))
    )
    while grid_tiles(width, height, patch, stride) > max_grid:
        stride += 1
    return stride


def check_grid(width: int, height: int, settings: TileSettings, grid_factor: int = 4) -> None:
    """Refuses, before any pixel is decoded, a stride that would cut the image into more than
    ``grid_factor x max_tiles`` tiles (measuring the tissue of each costs time too).

    Raises:
        TilingError: 413 naming the tile count and the smallest stride that fits.
    """
    if width < settings.patch or height < settings.patch:
        raise TilingError(
            f"{width} x {height} pixels is smaller than one {settings.patch} x {settings.patch} "
            "patch; classify it as a single image instead"
        )
    limit = grid_factor * settings.max_tiles
    tiles = grid_tiles(width, height, settings.patch, settings.stride)
    if tiles > limit:
        fits = smallest_stride(width, height, settings.patch, limit)
        raise TilingError(
            f"a stride of {settings.stride} px cuts this {width} x {height} image into {tiles:,} "
            f"tiles; at most {limit:,} are examined per image ({settings.max_tiles:,} of them "
            f"classified): use a stride of at least {fits} px",
            413,
        )


def positions(size: int, patch: int, stride: int) -> list[int]:
    """Tile starts along one side: every ``stride`` pixels, plus one flush with the far
    edge so the last pixels are covered too."""
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def tissue_fractions(
    rgb: np.ndarray, xs: Sequence[int], ys: Sequence[int], patch: int
) -> np.ndarray:
    """[len(ys), len(xs)] fraction of tissue pixels per tile (see GLASS_LEVEL, MIN_SATURATION).

    Args:
        rgb: uint8 [H, W, 3].
    """
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # np.maximum over the channel planes: ~20x faster than rgb.max(axis=2) on a 2,000^2 image.
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    spread = (high - low).astype(np.uint16) * 100  # uint8 high >= low: no wrap-around
    tissue = (low < GLASS_LEVEL) | (spread > round(MIN_SATURATION * 100) * high.astype(np.uint16))
    fractions = np.empty((len(ys), len(xs)), np.float64)
    for r, y in enumerate(ys):
        band = tissue[y : y + patch]
        for c, x in enumerate(xs):
            fractions[r, c] = band[:, x : x + patch].mean()
    return fractions


def decode_rgb(image_bytes: bytes) -> np.ndarray:
    """The uploaded image as uint8 RGB (already checked by ``webapp.uploads``)."""
    with Image.open(io.BytesIO(image_bytes)) as source:
        return np.asarray(source.convert("RGB"))


def encode_tile(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def plan(rgb: np.ndarray, settings: TileSettings) -> tuple[list[Tile], int, int]:
    """The tiles of an image with their tissue fractions; tissue tiles marked to send.

    Raises:
        TilingError: 413 when more than ``settings.max_tiles`` tiles hold tissue.
    """
    height, width = rgb.shape[:2]
    xs = positions(width, settings.patch, settings.stride)
    ys = positions(height, settings.patch, settings.stride)
    fractions = tissue_fractions(rgb, xs, ys, settings.patch)
    tiles = [
        Tile(
            r,
            c,
            x,
            y,
            float(fractions[r, c]),
            status=STATUS_TISSUE if fractions[r, c] >= settings.min_tissue else STATUS_BACKGROUND,
        )
        for r, y in enumerate(ys)
        for c, x in enumerate(xs)
    ]
    sent = sum(t.status == STATUS_TISSUE for t in tiles)
    if sent > settings.max_tiles:
        raise TilingError(
            f"{width}x{height} pixels at patch {settings.patch}, stride {settings.stride} need "
            f"{sent} tissue tiles; at most {settings.max_tiles} are classified per image "
            f"(use a larger stride or a smaller image)",
            413,
        )
    return tiles, len(ys), len(xs)


def decision(
    prediction: Any,
    threshold: float,
    positive_class: str | None,
    card: dict[str, Any] | None = None,
    data: bytes | None = None,
    whole_image: bool = False,
) -> tuple[str, bool, str | None]:
    """(status, positive, reason) of one tile's answer.

    The model server's decision (``breastdx_core/decision.py``'s fields, ``Prediction.decision``:
    ``status`` assessed / uncertain / not_assessed, ``class_name``, ``reason``) wins where it
    sends one: the map never re-decides what the server decided. From a back end without
    one (TF Serving, Vertex AI) the card's own rule is applied here to the tile's bytes, as
    ``webapp.service`` does for a single image (``check_size`` off for a tile of a larger
    image). Without a rule in the card the tile is positive when its positive probability is
    at least ``threshold``.
    """
    ruled = getattr(prediction, "decision", None)
    if (
        not (isinstance(ruled, dict) and ruled.get("status"))
        and card
        and card.get("decision_rule")
        and data
    ):
        from breastdx_core import decision as rule

        ruled = rule.assess(
            card,
            data,
            prediction.probabilities,
            getattr(prediction, "ood_score", None),
            check_size=whole_image,
        )
    if isinstance(ruled, dict) and ruled.get("status"):
        if ruled["status"] == SERVER_NOT_ASSESSED:
            return STATUS_FLAGGED, False, ruled.get("reason") or ruled.get("text") or "not assessed"
        if ruled["status"] == SERVER_UNCERTAIN:
            return STATUS_UNCERTAIN, False, ruled.get("text") or ruled.get("reason")
        called = ruled.get("class_name")
        return STATUS_ASSESSED, positive_class is not None and called == positive_class, None
    return STATUS_ASSESSED, prediction.positive_probability >= threshold, None


def classify_tiles(
    predict: Callable[[list[bytes]], list[Any]], crops: list[bytes], settings: TileSettings
) -> list[Any]:
    """Sends the crops in batches of ``settings.batch``, ``settings.workers`` at a time."""
    batches = [crops[i : i + settings.batch] for i in range(0, len(crops), settings.batch)]
    if not batches:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool:
        answers = list(pool.map(predict, batches))
    return [p for batch in answers for p in batch]


def map_image(
    image_bytes: bytes,
    predict: Callable[[list[bytes]], list[Any]],
    settings: TileSettings,
    positive_class: str | None = None,
    threshold: float = 0.5,
    model_name: str | None = None,
    card: dict[str, Any] | None = None,
    rgb: np.ndarray | None = None,
    check_whole: Callable[[np.ndarray, list[Tile], int], str | None] | None = None,
) -> TileMap:
    """Tiles an image, classifies the tissue tiles, returns the :class:`TileMap`.

    Args:
        image_bytes: a checked upload (PNG/JPEG/GIF/BMP).
        predict: sends a batch of encoded tiles to the model; returns objects with
            ``positive_probability``, ``class_name``, ``model_version`` (a
            ``webapp.clients.Prediction``) and optionally the server's decision fields.
        settings: patch, stride and limits.
        positive_class: the card's positive class, for labels.
        threshold: the positive-probability threshold when the server sends no decision.
        model_name: shown with the map.
        card: the served version's model card, for its decision rule where the server
            sends no decision.
        rgb: the image already decoded by :func:`decode_rgb` (decoded here otherwise).
        check_whole: called with (rgb, tiles, patch) once the tissue is found and before any
            tile is sent; a reason it returns refuses the whole image (the input contract
            of the whole image, ``webapp.wholeslide.whole_image_reason``).

    Raises:
        TilingError: the image is smaller than one patch, needs too many tiles, or is
            not assessed as a whole (422).
    """
    import time

    started = time.perf_counter()
    rgb = decode_rgb(image_bytes) if rgb is None else rgb
    height, width = rgb.shape[:2]
    if width < settings.patch or height < settings.patch:
        raise TilingError(
            f"{width}x{height} pixels is smaller than one {settings.patch}x{settings.patch} patch; "
            "classify it as a single image instead"
        )
    tiles, rows, cols = plan(rgb, settings)
    if check_whole is not None:
        reason = check_whole(rgb, tiles, settings.patch)
        if reason:
            raise TilingError(reason, NOT_ASSESSED_STATUS)
    sent = [t for t in tiles if t.status == STATUS_TISSUE]
    crops = [encode_tile(rgb[t.y : t.y + settings.patch, t.x : t.x + settings.patch]) for t in sent]
    answers = classify_tiles(predict, crops, settings)
    version = None
    for tile, answer, crop in zip(sent, answers, crops):
        tile.status, positive, tile.reason = decision(answer, threshold, positive_class, card, crop)
        version = getattr(answer, "model_version", version)
        if tile.status == STATUS_FLAGGED:
            continue
        tile.positive_probability = round(float(answer.positive_probability), PROBABILITY_DIGITS)
        tile.class_name = answer.class_name
        tile.positive = positive
    return TileMap(
        width,
        height,
        settings,
        rows,
        cols,
        tiles,
        positive_class,
        model_name,
        version,
        seconds=time.perf_counter() - started,
    )


# --- the picture -------------------------------------------------------------------------
MAP_DISPLAY_SIDE = 768  # longer side of the map picture
LEGEND_FONT_PX = 14  # the export's legend is read on a screen or on paper
LEGEND_NOTE_LINES = 2
LEGEND_HEIGHT = (3 + LEGEND_NOTE_LINES) * (LEGEND_FONT_PX + 8) + 8
LEGEND_MIN_WIDTH = 560  # the legend's text fits; a narrower picture is padded white on the right
LEGEND_BAR_PX = 200
MAP_ALPHA = 0.5
FLAGGED_COLOUR = (128, 128, 128)
BOX_COLOUR = (0, 0, 0)
REFER_COLOUR = (0, 0, 0)  # uncertain tiles ("refer to a pathologist"): dashed, over a white line
REFER_UNDER = (255, 255, 255)
REFER_DASH = 3
TEXT_COLOUR = (20, 20, 20)


def colour_of(probability: float) -> tuple[int, int, int]:
    """The overlay's colour map (cold - warm - hot) at one probability."""
    level = Image.new("L", (1, 1), int(round(min(1.0, max(0.0, probability)) * overlay.BYTE_MAX)))
    return ImageOps.colorize(
        level, black=overlay.COLD, mid=overlay.WARM, white=overlay.HOT
    ).getpixel((0, 0))


def render_map(
    image_bytes: bytes,
    tile_map: TileMap,
    research_only: str,
    display_side: int = MAP_DISPLAY_SIDE,
    rgb: np.ndarray | None = None,
    legend: bool = True,
) -> bytes:
    """The image with each assessed tile tinted by its positive probability, flagged tiles
    grey, "refer" (uncertain) tiles outlined dashed in magenta, the most suspicious regions
    boxed and numbered, and (``legend``) a legend drawn under it; PNG bytes (``rgb``: the
    image already decoded). The web page draws its legend in HTML instead."""
    picture = Image.fromarray(decode_rgb(image_bytes) if rgb is None else rgb)
    scale = min(1.0, display_side / max(picture.size))
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.BILINEAR) if scale < 1.0 else picture
    # Overlapping tiles (stride < patch): each pixel takes the highest probability over it.
    heat = np.full((size[1], size[0]), -1.0, np.float32)
    flagged = np.zeros((size[1], size[0]), bool)
    patch = tile_map.settings.patch
    for tile in tile_map.tiles:
        y0, x0 = int(tile.y * scale), int(tile.x * scale)
        y1, x1 = (
            max(y0 + 1, int(math.ceil((tile.y + patch) * scale))),
            max(x0 + 1, int(math.ceil((tile.x + patch) * scale))),
        )
        if tile.status in ANSWERED:
            heat[y0:y1, x0:x1] = np.maximum(heat[y0:y1, x0:x1], tile.positive_probability)
        elif tile.status == STATUS_FLAGGED:
            flagged[y0:y1, x0:x1] = True
    levels = Image.fromarray((np.clip(heat, 0, 1) * overlay.BYTE_MAX).astype(np.uint8), "L")
    coloured = np.asarray(
        ImageOps.colorize(levels, black=overlay.COLD, mid=overlay.WARM, white=overlay.HOT)
    )
    base = np.asarray(picture).astype(np.float32)
    blended = base.copy()
    seen = heat >= 0
    blended[seen] = (1 - MAP_ALPHA) * base[seen] + MAP_ALPHA * coloured[seen]
    blended[flagged & ~seen] = (1 - MAP_ALPHA) * base[flagged & ~seen] + MAP_ALPHA * np.array(
        FLAGGED_COLOUR
    )
    result = Image.fromarray(blended.astype(np.uint8))
    draw = ImageDraw.Draw(result)
    for tile in tile_map.tiles:
        if tile.status == STATUS_UNCERTAIN:
            dashed_box(
                draw,
                tile.x * scale,
                tile.y * scale,
                (tile.x + patch) * scale - 1,
                (tile.y + patch) * scale - 1,
            )
    for region in tile_map.top_regions():
        box = [
            region["x"] * scale,
            region["y"] * scale,
            (region["x"] + patch) * scale - 1,
            (region["y"] + patch) * scale - 1,
        ]
        draw.rectangle(box, outline=BOX_COLOUR, width=2)
        draw.text((box[0] + 2, box[1] + 1), str(region["rank"]), fill=BOX_COLOUR)
    if not legend:
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
        return buffer.getvalue()
    return with_legend(result, tile_map.positive_class, tile_map.counts(), research_only)


def map_layers(tile_map: TileMap, display_side: int = MAP_DISPLAY_SIDE) -> tuple[bytes, bytes]:
    """(overlay, marks): two RGBA PNGs of the map at the picture's scale for the deep-zoom
    viewer (templates/_viewer.html) to lay over the image: answered tiles coloured by
    their positive probability and not-assessed tiles grey (transparent elsewhere), and
    the "refer" tiles' dashed outlines."""
    scale = min(1.0, display_side / max(tile_map.width, tile_map.height))
    size = (max(1, round(tile_map.width * scale)), max(1, round(tile_map.height * scale)))
    patch = tile_map.settings.patch
    heat = np.full((size[1], size[0]), -1.0, np.float32)
    flagged = np.zeros((size[1], size[0]), bool)
    for tile in tile_map.tiles:
        y0, x0 = int(tile.y * scale), int(tile.x * scale)
        y1 = max(y0 + 1, int(math.ceil((tile.y + patch) * scale)))
        x1 = max(x0 + 1, int(math.ceil((tile.x + patch) * scale)))
        if tile.status in ANSWERED:
            heat[y0:y1, x0:x1] = np.maximum(heat[y0:y1, x0:x1], tile.positive_probability)
        elif tile.status == STATUS_FLAGGED:
            flagged[y0:y1, x0:x1] = True
    levels = Image.fromarray((np.clip(heat, 0, 1) * overlay.BYTE_MAX).astype(np.uint8), "L")
    coloured = np.asarray(
        ImageOps.colorize(levels, black=overlay.COLD, mid=overlay.WARM, white=overlay.HOT)
    )
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    seen = heat >= 0
    rgba[seen, :3] = coloured[seen]
    rgba[flagged & ~seen, :3] = FLAGGED_COLOUR
    rgba[seen | flagged, 3] = overlay.BYTE_MAX
    refer = [(t.x, t.y, patch, patch) for t in tile_map.tiles if t.status == STATUS_UNCERTAIN]
    return _png(Image.fromarray(rgba, "RGBA")), marks_png(tile_map.width, tile_map.height, refer)


MARKS_SIDE = (
    2048  # the marks layer's longer side: thin lines at any zoom, whatever the image's size
)


def marks_png(width: int, height: int, boxes: Sequence[tuple[int, int, int, int]]) -> bytes:
    """An RGBA PNG the viewer stretches over a ``width`` x ``height`` image: the dashed
    outline of each (x, y, w, h) box in image pixels, transparent elsewhere. It is drawn at
    ``MARKS_SIDE`` pixels on its longer side so the lines stay thin against the tiles."""
    scale = MARKS_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    marks = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(marks)
    for x, y, w, h in boxes:
        dashed_box(draw, x * scale, y * scale, (x + w) * scale - 1, (y + h) * scale - 1)
    return _png(marks)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def dashed_box(draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float) -> None:
    """A dashed outline (the "refer to a pathologist" tiles): dashes of REFER_DASH pixels."""
    side = min(x1 - x0, y1 - y0)
    width = max(1, int(round(side / 30)))
    dash = max(REFER_DASH, side / 8)
    draw.rectangle([x0, y0, x1, y1], outline=REFER_UNDER, width=width)
    for a, b, fixed, horizontal in (
        (x0, x1, y0, True),
        (x0, x1, y1, True),
        (y0, y1, x0, False),
        (y0, y1, x1, False),
    ):
        start = a
        while start < b:
            end = min(b, start + dash)
            line = [(start, fixed), (end, fixed)] if horizontal else [(fixed, start), (fixed, end)]
            draw.line(line, fill=REFER_COLOUR, width=width)
            start += 2 * dash


def with_legend(
    picture: Image.Image,
    positive_class: str | None,
    counts: dict[str, int],
    note: str,
    boxes: str = "; black boxes: the most suspicious regions",
) -> bytes:
    """The picture above a legend a person can read (``LEGEND_FONT_PX`` text): the colour
    bar, the not-assessed and "refer" marks with their counts, and ``note``; PNG bytes."""
    width = max(picture.width, LEGEND_MIN_WIDTH)
    canvas = Image.new("RGB", (width, picture.height + LEGEND_HEIGHT), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=LEGEND_FONT_PX)
    line = LEGEND_FONT_PX + 8
    left, top = 8, picture.height + 6
    label = f"P({positive_class})" if positive_class else "positive probability"
    draw.text((left, top), "0", fill=TEXT_COLOUR, font=font)
    bar_left = left + 14
    for i in range(LEGEND_BAR_PX):
        draw.line(
            [(bar_left + i, top + 2), (bar_left + i, top + LEGEND_FONT_PX)],
            fill=colour_of(i / (LEGEND_BAR_PX - 1)),
        )
    draw.text(
        (bar_left + LEGEND_BAR_PX + 4, top), f"1   colour: {label}", fill=TEXT_COLOUR, font=font
    )
    top += line
    size = LEGEND_FONT_PX
    draw.rectangle([left, top + 2, left + size, top + size], fill=FLAGGED_COLOUR)
    flagged = f"not assessed: {counts['flagged']}"
    draw.text((left + size + 6, top), flagged, fill=TEXT_COLOUR, font=font)
    refer_left = left + size + 6 + int(draw.textlength(flagged, font=font)) + 16
    dashed_box(draw, refer_left, top + 2, refer_left + size, top + size)
    draw.text(
        (refer_left + size + 6, top),
        f"uncertain, refer to a pathologist: {counts['uncertain']}",
        fill=TEXT_COLOUR,
        font=font,
    )
    top += line
    draw.text(
        (left, top),
        f"assessed: {counts['assessed']}, of which positive: {counts['positive']}{boxes}",
        fill=TEXT_COLOUR,
        font=font,
    )
    for text in _wrap(draw, note, font, width - 2 * left)[:LEGEND_NOTE_LINES]:
        top += line
        draw.text((left, top), text, fill=TEXT_COLOUR, font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels, broken between words."""
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return lines + ([current] if current else [])
