"""Whole-slide test files: IDC patches placed at their x/y in a pyramidal tiled TIFF (or SVS).

No slide can be downloaded here, so the tests (``tests/test_slides.py`` from the synthetic
IDC generator in ``pipeline/synthetic.py``; the web and browser tests from 48 real patches of
one patient in ``tests/data/idc-8917``) and ``bench/slide.py`` (a 100,000 x 80,000
synthetic-tissue slide, or a whole real patient) build their slides with
:func:`write_slide`: tifffile writes a tiled, deflate-compressed pyramid (level 0 plus
downsamples of 4, 16, 64...) with TIFF resolution tags and, for ``.svs``, an Aperio-style
ImageDescription (``AppMag``, ``MPP``) that OpenSlide's Aperio reader parses.

IDC patches are 2.5x of a 40x scan (about 4 um/px, ``PATCH_MPP``): a slide at a finer level-0
resolution is the patch mosaic enlarged (nearest neighbour: no detail is invented, the
pixels just get bigger), its lower levels the mosaic area-averaged, as a scanner's pyramid.
Tiles are produced one at a time from the mosaic, so a slide of any size is written in the
memory of its mosaic and one tile.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

PATCH_MPP = 4.0  # IDC patches: 2.5x of a 40x scan at ~0.25 um/px
TILE = 256
DEFLATE_LEVEL = 1  # fast; the test and bench slides are written, not archived
GLASS = 244  # slide glass around the tissue
NAME = re.compile(r"_x(\d+)_y(\d+)_class(\d)\.png$")
# Aperio's own first line: OpenSlide recognises an SVS by "Aperio" at the description's start.
APERIO_HEAD = "Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] ({t}x{t}) RAW"


@dataclasses.dataclass
class Mosaic:
    """Patches on one canvas at the patches' scale; ``labels`` [rows, cols] per patch cell
    (-1 where none), origin = the canvas pixel of the cell grid's (0, 0)."""

    rgb: np.ndarray
    labels: np.ndarray
    origin: tuple[int, int]
    patch: int
    files: int


def patch_mosaic(folder: str, patch: int = 50, margin: int = 2, limit: int | None = None) -> Mosaic:
    """The PNG patches under ``folder`` (``*_x<X>_y<Y>_class<C>.png``, any depth) at their x/y,
    on glass with ``margin`` patches of glass around; unreadable files are left out."""
    found: list[tuple[int, int, int, str]] = []
    for base, _, names in os.walk(folder):
        for name in sorted(names):
            match = NAME.search(name)
            if match:
                found.append(
                    (
                        int(match.group(1)),
                        int(match.group(2)),
                        int(match.group(3)),
                        os.path.join(base, name),
                    )
                )
    found.sort()
    if limit:
        found = found[:limit]
    if not found:
        raise ValueError(f"no IDC patches (*_x<X>_y<Y>_class<C>.png) under {folder}")
    x0, y0 = min(f[0] for f in found), min(f[1] for f in found)
    cols = (max(f[0] for f in found) - x0) // patch + 1
    rows = (max(f[1] for f in found) - y0) // patch + 1
    rgb = np.full(((rows + 2 * margin) * patch, (cols + 2 * margin) * patch, 3), GLASS, np.uint8)
    labels = np.full((rows, cols), -1, np.int8)
    placed = 0
    for x, y, label, path in found:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, ValueError):
            continue
        top, left = y - y0 + margin * patch, x - x0 + margin * patch
        h, w = min(pixels.shape[0], patch), min(pixels.shape[1], patch)
        rgb[top : top + h, left : left + w] = pixels[:h, :w]
        labels[(y - y0) // patch, (x - x0) // patch] = label
        placed += 1
    return Mosaic(rgb, labels, (margin * patch, margin * patch), patch, placed)


def _level_sizes(width: int, height: int, factor: int, smallest: int) -> list[tuple[int, int, int]]:
    sizes = [(width, height, 1)]
    downsample = factor
    while max(width, height) // downsample >= smallest:
        sizes.append((max(1, width // downsample), max(1, height // downsample), downsample))
        downsample *= factor
    return sizes


def _tiles(
    level_pixels: Callable[[int, int, int, int], np.ndarray],
    width: int,
    height: int,
    blank: dict[str, bytes],
) -> Iterator[bytes]:
    """Deflate-compressed tiles in row-major order (tifffile writes the bytes as they come)."""
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            tile = np.full((TILE, TILE, 3), GLASS, np.uint8)
            h, w = min(TILE, height - y), min(TILE, width - x)
            tile[:h, :w] = level_pixels(x, y, w, h)
            if (tile == GLASS).all():  # most of a slide is glass: compress it once
                if "glass" not in blank:
                    blank["glass"] = zlib.compress(tile.tobytes(), DEFLATE_LEVEL)
                yield blank["glass"]
            else:
                yield zlib.compress(tile.tobytes(), DEFLATE_LEVEL)


def write_slide(
    path: str,
    source: np.ndarray,
    source_mpp: float,
    mpp: float,
    svs: bool | None = None,
    factor: int = 4,
    smallest: int = 512,
    objective: float | None = None,
) -> dict[str, object]:
    """Writes ``source`` (uint8 [H, W, 3] at ``source_mpp``) as a pyramidal slide at ``mpp``.

    Args:
        path: ``.svs`` (Aperio description) or ``.tif``/``.tiff`` (generic tiled TIFF).
        source: the image at its own scale (e.g. a :func:`patch_mosaic` at 4 um/px).
        source_mpp: its microns per pixel; mpp: the slide's level 0 (a multiple of 2 finer,
            or equal: the source is enlarged by whole pixels).
        svs: force the Aperio description on or off (default: by suffix).
        factor: downsample between levels; smallest: stop when a level's longer side is below.
        objective: the AppMag to record (default 10 / mpp, i.e. 40x at 0.25 um/px).

    Returns:
        {"path", "width", "height", "mpp", "levels"}.
    """
    import tifffile

    svs = path.lower().endswith(".svs") if svs is None else svs
    enlarge = source_mpp / mpp
    if enlarge < 1 or abs(enlarge - round(enlarge)) > 1e-6:
        raise ValueError(f"the slide's {mpp} um/px must divide the source's {source_mpp} um/px")
    enlarge = int(round(enlarge))
    height, width = source.shape[0] * enlarge, source.shape[1] * enlarge
    objective = objective or round(10.0 / mpp, 2)
    levels = _level_sizes(width, height, factor, smallest)
    blank: dict[str, bytes] = {}
    resolution = (1e4 / mpp, 1e4 / mpp)  # pixels per centimetre
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for index, (w, h, downsample) in enumerate(levels):
            scale = enlarge / downsample  # level pixels per source pixel
            if scale >= 1:
                step = int(round(scale))

                def pixels(x, y, tw, th, step=step):
                    rows = (np.arange(y, y + th) // step).clip(0, source.shape[0] - 1)
                    cols = (np.arange(x, x + tw) // step).clip(0, source.shape[1] - 1)
                    return source[rows][:, cols]
            else:
                small = np.asarray(Image.fromarray(source).resize((w, h), Image.BOX))

                def pixels(x, y, tw, th, small=small):
                    return small[y : y + th, x : x + tw]

            description = None
            if svs:
                description = (
                    APERIO_HEAD.format(w=w, h=h, t=TILE) + f"|AppMag = {objective:g}|MPP = "
                    f"{mpp * downsample:.4f}|Filename = {os.path.basename(path)}"
                )
            writer.write(
                _tiles(pixels, w, h, blank),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="zlib",
                resolution=resolution
                if index == 0
                else (resolution[0] / downsample, resolution[1] / downsample),
                resolutionunit="CENTIMETER",
                subfiletype=0 if index == 0 else 1,
                description=description,
                metadata=None,
            )
    return {
        "path": path,
        "width": width,
        "height": height,
        "mpp": mpp,
        "levels": [(w, h, d) for w, h, d in levels],
    }


def synthetic_patient_slide(
    path: str, mpp: float = 1.0, patches: int = 100, seed: int = 11, workdir: str | None = None
) -> dict[str, object]:
    """A slide of one synthetic IDC patient (``pipeline.synthetic.write_idc``, no quirks) at
    ``mpp``; returns :func:`write_slide`'s dict plus the patch ``labels`` grid and ``origin``."""
    import tempfile

    from pipeline import synthetic

    with tempfile.TemporaryDirectory(dir=workdir) as root:
        synthetic.write_idc(root, patients=1, patches_per_patient=patches, seed=seed, quirks=False)
        return patient_slide(path, root, mpp)


def patient_slide(path: str, folder: str, mpp: float = 1.0) -> dict[str, object]:
    """A slide of the IDC patches under ``folder`` (real or synthetic) at their x/y, at ``mpp``;
    returns :func:`write_slide`'s dict plus the patch ``labels`` grid and ``origin``."""
    mosaic = patch_mosaic(folder)
    written = write_slide(path, mosaic.rgb, PATCH_MPP, mpp)
    return {**written, "labels": mosaic.labels, "origin": mosaic.origin, "patches": mosaic.files}


def synthetic_tissue(
    width: int, height: int, seed: int = 3, bank: int = 256, blobs: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """A large synthetic-tissue image at the patches' scale for the bench: a few elliptical
    tissue blobs on glass, filled with a bank of synthetic IDC patches (one blob a tumour);
    returns (rgb, tile labels [height // 50, width // 50], -1 on glass)."""
    from pipeline import synthetic

    rng = np.random.default_rng(seed)
    patch = synthetic.PATCH
    rows, cols = height // patch, width // patch
    negatives = [synthetic.render_patch(rng, False) for _ in range(bank)]
    positives = [synthetic.render_patch(rng, True) for _ in range(bank // 4)]
    yy, xx = np.mgrid[0:rows, 0:cols]
    inside = np.zeros((rows, cols), bool)
    tumour = np.zeros((rows, cols), bool)
    for index in range(blobs):
        cy, cx = rng.uniform(0.2, 0.8) * rows, rng.uniform(0.15, 0.85) * cols
        ry, rx = rng.uniform(0.12, 0.3) * rows, rng.uniform(0.08, 0.22) * cols
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        inside |= blob
        if index == 0:
            tumour |= ((yy - cy) / (ry / 2)) ** 2 + ((xx - cx) / (rx / 2)) ** 2 <= 1
    rgb = np.full((rows * patch, cols * patch, 3), GLASS, np.uint8)
    labels = np.full((rows, cols), -1, np.int8)
    for r, c in zip(*np.nonzero(inside)):
        label = int(tumour[r, c])
        source = positives if label else negatives
        rgb[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = source[
            int(rng.integers(len(source)))
        ]
        labels[r, c] = label
    return rgb, labels


def write_plain_tiff(
    path: str,
    rgb: np.ndarray,
    resolution: bool = False,
    mpp: float = 1.0,
    tile: Sequence[int] | None = (TILE, TILE),
) -> str:
    """A single-level TIFF (tiled unless ``tile`` is None), with or without resolution tags:
    the tests' slide without metadata and their not-a-slide strip TIFF."""
    import tifffile

    kwargs = (
        {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if resolution else {}
    )
    tifffile.imwrite(
        path,
        rgb,
        photometric="rgb",
        tile=tuple(tile) if tile else None,
        compression="zlib",
        metadata=None,
        **kwargs,
    )
    return path


def write_sparse_tiff(path: str, width: int, height: int, tile: int = 4096) -> str:
    """A tiled BigTIFF of ``width`` x ``height`` whose tiles are all absent (zero byte counts,
    as TIFF allows): a slide far past the size limits in a few kilobytes, for the
    tests' "too large" refusal. No resolution tags (give ``mpp``)."""
    import tifffile

    count = -(-width // tile) * -(-height // tile)
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(
            (b"" for _ in range(count)),
            shape=(height, width, 3),
            dtype="uint8",
            tile=(tile, tile),
            compression="zlib",
            photometric="rgb",
            metadata=None,
        )
    return path


def write_ome_tiff(path: str, rgb: np.ndarray, mpp: float, tile: int = TILE) -> str:
    """A tiled OME-TIFF as microscopy tools write one: level 0 with its pyramid (by 4) in
    SubIFDs and the scale only in the OME-XML (``PhysicalSizeX`` in um), no resolution tags."""
    import tifffile

    levels = [rgb]
    while min(levels[-1].shape[:2]) // 4 >= tile:
        levels.append(levels[-1][::4, ::4])
    options = {"tile": (tile, tile), "photometric": "rgb", "compression": "zlib"}
    size = {"PhysicalSizeX": mpp, "PhysicalSizeY": mpp}
    units = {"PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(rgb, subifds=len(levels) - 1, metadata={**size, **units}, **options)
        for level in levels[1:]:
            writer.write(level, subfiletype=1, **options)
    return path
