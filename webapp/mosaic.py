"""A patient's IDC patches put back together: the whole-slide view with per-patch probabilities.

The IDC data set cuts each whole-mount slide into 50x50 patches named
``<patient>_idx5_x<X>_y<Y>_class<C>.png``; X and Y are the patch's top-left pixel on the
slide. ``webapp.wholeslide`` (zip upload, ``/mosaic`` and ``POST /api/mosaic``) and
``breastdx_cli.predict`` (``breastdx predict --mosaic FOLDER``) call :func:`read_zip` or
:func:`read_folder`, then :func:`classify` and :func:`render`.

A zip upload is read in memory only, member by member, and refused with a 4xx before
any pixel is decoded when it is empty, holds paths outside its root or links, declares
more bytes or members than allowed, compresses too well (a zip bomb), or places patches
on a slide larger than the pixel limit. Every patch then passes the upload checks of
``webapp.uploads``; a patch that fails them (empty, truncated, not an image) is left out
of the slide and listed with its reason, as ImageIngest reports the files it skips.
Nothing is written to disk. Only numpy and Pillow: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import io
import os
import posixpath
import re
import stat
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from webapp import tiling
from webapp.uploads import HTTP_BAD_REQUEST, HTTP_TOO_LARGE, UploadError, check_upload

# <patient>_idx5_x<X>_y<Y>_class<C>.png, as in Janowczyk & Madabhushi's release.
PATCH_NAME = re.compile(
    r"^(?P<patient>[A-Za-z0-9-]+)_idx5_x(?P<x>\d{1,6})_y(?P<y>\d{1,6})_class(?P<label>[01])\.png$",
    re.IGNORECASE,
)
MAX_MEMBERS = 20000  # the largest IDC patient has ~2,400 patches
MAX_UNCOMPRESSED = 256 * 1024 * 1024  # declared total of the members
MAX_RATIO = 50  # uncompressed / compressed; PNG patches barely compress, bombs compress ~1000x
MAX_MOSAIC_PIXELS = 8000 * 8000  # the slide canvas the patches span
MAX_PATCH_BYTES = 1024 * 1024
MAX_PATCH_PIXELS = 512 * 512
MOSAIC_DISPLAY_SIDE = 1024
MAX_LISTED = 20  # refused patches named in the answer (all are counted)
SKIPPED_PATCH = "refused_patch"
OUTLINE_LABELLED = (0, 0, 0)  # patches the file name marks class 1 (the data set's annotation)


@dataclasses.dataclass
class Patch:
    """One patch: its place on the slide, the data set's label and the model's answer."""

    name: str
    patient: str
    x: int
    y: int
    label: int
    data: bytes
    width: int = 0
    height: int = 0
    status: str = tiling.STATUS_TISSUE
    positive_probability: float | None = None
    class_name: str | None = None
    positive: bool = False
    reason: str | None = None


@dataclasses.dataclass
class Mosaic:
    """A patient's patches and the slide they span."""

    patient: str
    patches: list[Patch]
    skipped: dict[str, int]
    refused: list[str]
    width: int
    height: int
    positive_class: str | None = None
    model_name: str | None = None
    model_version: str | None = None

    def counts(self) -> dict[str, int]:
        counts = tiling.status_counts(self.patches, {"patches": len(self.patches)})
        counts.pop(tiling.STATUS_BACKGROUND)
        counts["labelled_positive"] = sum(p.label == 1 for p in self.patches)
        counts["agree_with_label"] = sum(
            p.positive == bool(p.label) for p in self.patches if p.status == tiling.STATUS_ASSESSED
        )
        assessed = [p for p in self.patches if p.status == tiling.STATUS_ASSESSED]
        counts["labelled_positive_assessed"] = sum(p.label == 1 for p in assessed)
        counts["true_positive"] = sum(p.label == 1 and p.positive for p in assessed)
        counts["labelled_negative_assessed"] = sum(p.label == 0 for p in assessed)
        counts["true_negative"] = sum(p.label == 0 and not p.positive for p in assessed)
        return counts

    def rates(self) -> list[dict[str, Any]]:
        """Sensitivity and specificity against the file names' labels, each with its n and a
        95 % Wilson interval, over the assessed patches (uncertain and not-assessed patches
        are in neither; the page says how many)."""
        counts = self.counts()
        out = []
        for key, label, hits, n in (
            (
                "sensitivity",
                f"labelled IDC called {self.positive_class or 'positive'}",
                counts["true_positive"],
                counts["labelled_positive_assessed"],
            ),
            (
                "specificity",
                "labelled non-IDC called negative",
                counts["true_negative"],
                counts["labelled_negative_assessed"],
            ),
        ):
            low, high = wilson(hits, n)
            out.append(
                {
                    "key": key,
                    "label": label,
                    "hits": hits,
                    "n": n,
                    "value": None if n == 0 else round(hits / n, 4),
                    "ci95": [low, high],
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """The JSON API's body (without the picture)."""
        return {
            "patient": self.patient,
            "width": self.width,
            "height": self.height,
            "counts": self.counts(),
            "rates": self.rates(),
            "skipped_text": skipped_text(self.skipped),
            "top_regions": top_patches(self),
            "skipped": self.skipped,
            "refused": self.refused,
            "positive_class": self.positive_class,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "patches": [
                {
                    "file": p.name,
                    "x": p.x,
                    "y": p.y,
                    "label": p.label,
                    "status": p.status,
                    "positive_probability": p.positive_probability,
                    "class_name": p.class_name,
                    "positive": p.positive,
                    "reason": p.reason,
                }
                for p in self.patches
            ],
        }


# The reasons a file of an archive was left out, as a person reads them.
SKIPPED_WORDS = {
    "not_an_idc_patch_name": (
        "file not named like an IDC patch",
        "files not named like an IDC patch",
    ),
    SKIPPED_PATCH: (
        "patch refused (unreadable or too large)",
        "patches refused (unreadable or too large)",
    ),
    "link": ("symbolic link", "symbolic links"),
}
WILSON_Z = 1.959964  # 95 %


def skipped_text(skipped: dict[str, int]) -> str:
    """{"not_an_idc_patch_name": 1, "refused_patch": 2} as "1 file not named like an IDC
    patch, 2 patches refused (unreadable or too large)"."""
    parts = []
    for key, count in sorted(skipped.items()):
        one, many = SKIPPED_WORDS.get(key, (key.replace("_", " "), key.replace("_", " ")))
        parts.append(f"{count:,} {one if count == 1 else many}")
    return ", ".join(parts)


def wilson(hits: int, n: int) -> tuple[float | None, float | None]:
    """The 95 % Wilson score interval of ``hits`` of ``n`` (None, None for n = 0)."""
    if n == 0:
        return None, None
    p = hits / n
    z2 = WILSON_Z**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = WILSON_Z * ((p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5) / (1 + z2 / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def parse_name(name: str) -> tuple[str, int, int, int] | None:
    """(patient, x, y, label) from an IDC patch file name, or None."""
    match = PATCH_NAME.match(name)
    if not match:
        return None
    return match["patient"], int(match["x"]), int(match["y"]), int(match["label"])


def _member_path(info: zipfile.ZipInfo) -> str:
    """The member's normalised path; UploadError for one outside the archive's root or a link."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UploadError(
            f"zip member {info.filename[:120]!r} has an absolute path; "
            "expected paths inside the archive"
        )
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or "/../" in f"/{name}/":
        raise UploadError(f"zip member {info.filename[:120]!r} points outside the archive's root")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadError(
            f"zip member {info.filename[:120]!r} is a symbolic link; expected plain PNG files"
        )
    return normal


def read_zip(
    data: bytes,
    max_members: int = MAX_MEMBERS,
    max_uncompressed: int = MAX_UNCOMPRESSED,
    max_mosaic_pixels: int = MAX_MOSAIC_PIXELS,
) -> tuple[list[Patch], dict[str, int], list[str]]:
    """The IDC patches in a zip archive, checked, in memory: (patches, skipped files by
    reason, refused patches with their reasons).

    Raises:
        UploadError: 400 (not a zip, empty, unsafe paths, no IDC patch names, no readable
            patch) or 413 (too many members, too many bytes, a zip bomb, a slide past the limit).
    """
    if not data:
        raise UploadError("the zip file is empty")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as err:
        raise UploadError(
            f"not a readable zip archive ({err}); expected a .zip of a patient's IDC patches"
        ) from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if not infos:
            raise UploadError(
                "the zip archive holds no files; expected a patient's "
                "<patient>_idx5_x<X>_y<Y>_class<C>.png patches"
            )
        if len(infos) > max_members:
            raise UploadError(
                f"the zip archive holds {len(infos)} files; at most {max_members} are accepted",
                HTTP_TOO_LARGE,
            )
        declared = sum(i.file_size for i in infos)
        if declared > max_uncompressed:
            raise UploadError(
                f"the zip archive declares {declared} bytes uncompressed; "
                f"at most {max_uncompressed} "
                "are accepted",
                HTTP_TOO_LARGE,
            )
        compressed = sum(i.compress_size for i in infos)
        if declared > MAX_RATIO * max(compressed, 1) and declared > MAX_PATCH_BYTES:
            raise UploadError(
                f"the zip archive would expand {declared // max(compressed, 1):,}-fold "
                "when unpacked; "
                f"PNG patches expand at most {MAX_RATIO}-fold, so it is refused",
                HTTP_TOO_LARGE,
            )
        named, skipped = [], {}
        for info in infos:
            path = _member_path(info)
            parsed = parse_name(posixpath.basename(path))
            if parsed is not None:
                named.append((info, path, parsed))
            else:
                skipped["not_an_idc_patch_name"] = skipped.get("not_an_idc_patch_name", 0) + 1
        if not named:
            raise UploadError(
                "no file in the zip archive is named like an IDC patch "
                "(<patient>_idx5_x<X>_y<Y>_class<C>.png)"
            )
        check_canvas([(x, y) for _, _, (_, x, y, _) in named], max_mosaic_pixels)
        entries = []
        for info, path, (patient, x, y, label) in named:
            if info.file_size > MAX_PATCH_BYTES:
                raise UploadError(
                    f"{path}: {info.file_size} bytes; a patch is at most {MAX_PATCH_BYTES}",
                    HTTP_TOO_LARGE,
                )
            with archive.open(info) as member:
                # Read one byte past the declared size: a member that lies about it is refused.
                content = member.read(info.file_size + 1)
            if len(content) != info.file_size:
                raise UploadError(
                    f"{path}: holds more bytes than its zip entry declares", HTTP_BAD_REQUEST
                )
            entries.append((posixpath.basename(path), content, patient, x, y, label))
    return _checked_all(entries, skipped)


def check_canvas(places: list[tuple[int, int]], max_pixels: int, patch: int = 50) -> None:
    """UploadError 413 when the patches span a slide larger than ``max_pixels``."""
    width = max(x for x, _ in places) + patch
    height = max(y for _, y in places) + patch
    if width * height > max_pixels:
        raise UploadError(
            f"the patches span a {width}x{height} slide; at most {max_pixels} pixels are accepted",
            HTTP_TOO_LARGE,
        )


def _checked_all(
    entries: list[tuple[str, bytes, str, int, int, int]], skipped: dict[str, int]
) -> tuple[list[Patch], dict[str, int], list[str]]:
    """Every patch through the web app's upload check; the refused ones counted and named.

    Raises:
        UploadError: when no patch is left.
    """
    patches, refused = [], []
    for index, (name, content, patient, x, y, label) in enumerate(entries):
        try:
            upload = check_upload(
                name, content, index, MAX_PATCH_BYTES, MAX_PATCH_PIXELS, convert=True
            )
        except UploadError as err:
            skipped[SKIPPED_PATCH] = skipped.get(SKIPPED_PATCH, 0) + 1
            if len(refused) < MAX_LISTED:
                refused.append(err.message)
            continue
        patches.append(
            Patch(upload.name, patient, x, y, label, upload.data, upload.width, upload.height)
        )
    if not patches:
        count = skipped.get(SKIPPED_PATCH, len(refused))
        raise UploadError(
            f"no readable patch: {count:,} refused ({'; '.join(refused[:3])}"
            + (f"; and {count - 3:,} more" if count > 3 else "")
            + ")"
        )
    return patches, skipped, refused


def read_folder(
    root: str, max_members: int = MAX_MEMBERS, max_mosaic_pixels: int = MAX_MOSAIC_PIXELS
) -> tuple[list[Patch], dict[str, int], list[str]]:
    """The IDC patches under a folder (``<patient>/<0|1>/*.png`` or flat); symbolic links
    are not followed. Returns the patches, the skipped files by reason and the refused
    patches with their reasons.

    Raises:
        UploadError: no patch, too many, a slide past the limit, or a refused file.
    """
    if not os.path.isdir(root):
        raise UploadError(f"{root} is not a folder; expected a patient's folder of IDC patches")
    found, skipped = [], {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for file_name in sorted(files):
            path = os.path.join(folder, file_name)
            parsed = parse_name(file_name)
            if parsed is None or os.path.islink(path):
                reason = "link" if os.path.islink(path) else "not_an_idc_patch_name"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            found.append((path, parsed))
            if len(found) > max_members:
                raise UploadError(f"{root} holds more than {max_members} patches", HTTP_TOO_LARGE)
    if not found:
        raise UploadError(
            f"no file under {root} is named like an IDC patch "
            "(<patient>_idx5_x<X>_y<Y>_class<C>.png)"
        )
    check_canvas([(x, y) for _, (_, x, y, _) in found], max_mosaic_pixels)
    entries = []
    for path, (patient, x, y, label) in found:
        with open(path, "rb") as handle:
            entries.append(
                (os.path.basename(path), handle.read(MAX_PATCH_BYTES + 1), patient, x, y, label)
            )
    return _checked_all(entries, skipped)


def assemble(
    patches: list[Patch],
    skipped: dict[str, int] | None = None,
    refused: list[str] | None = None,
) -> Mosaic:
    """One patient's :class:`Mosaic`; patches of other patients are an UploadError."""
    patients = sorted({p.patient for p in patches})
    if len(patients) != 1:
        raise UploadError(
            f"the patches belong to {len(patients)} patients ({', '.join(patients[:5])}); "
            "upload one patient's patches at a time"
        )
    width = max(p.x + p.width for p in patches)
    height = max(p.y + p.height for p in patches)
    return Mosaic(
        patients[0],
        sorted(patches, key=lambda p: (p.y, p.x)),
        dict(skipped or {}),
        list(refused or []),
        width,
        height,
    )


def classify(
    mosaic: Mosaic,
    predict: Callable[[list[bytes]], list[Any]],
    settings: tiling.TileSettings,
    threshold: float = 0.5,
    positive_class: str | None = None,
    model_name: str | None = None,
    card: dict[str, Any] | None = None,
) -> Mosaic:
    """Asks the model about every patch (batches as in ``webapp.tiling``, the same decision
    rule: ``tiling.decision``; a patch is a whole image of the training kind), in place."""
    answers = tiling.classify_tiles(predict, [p.data for p in mosaic.patches], settings)
    for patch, answer in zip(mosaic.patches, answers):
        patch.status, positive, patch.reason = tiling.decision(
            answer, threshold, positive_class, card, patch.data, whole_image=True
        )
        mosaic.model_version = getattr(answer, "model_version", mosaic.model_version)
        if patch.status == tiling.STATUS_FLAGGED:
            continue
        patch.positive_probability = round(
            float(answer.positive_probability), tiling.PROBABILITY_DIGITS
        )
        patch.class_name = answer.class_name
        patch.positive = positive
    mosaic.positive_class, mosaic.model_name = positive_class, model_name
    return mosaic


def render(
    mosaic: Mosaic, research_only: str, display_side: int = MOSAIC_DISPLAY_SIDE, legend: bool = True
) -> bytes:
    """The slide rebuilt from its patches, each tinted by its positive probability (grey:
    flagged), outlined where the data set labels it class 1, "refer" patches dashed in
    magenta, with the legend under it (``legend``; the web page draws it in HTML); PNG bytes."""
    canvas = Image.new("RGB", (mosaic.width, mosaic.height), "white")
    for patch in mosaic.patches:
        with Image.open(io.BytesIO(patch.data)) as source:
            canvas.paste(source.convert("RGB"), (patch.x, patch.y))
    scale = min(1.0, display_side / max(canvas.size))
    size = (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale)))
    picture = np.asarray(canvas.resize(size, Image.BILINEAR) if scale < 1.0 else canvas).astype(
        np.float32
    )
    tinted = picture.copy()
    outlines = []
    for patch in mosaic.patches:
        y0, x0 = int(patch.y * scale), int(patch.x * scale)
        y1, x1 = (
            max(y0 + 1, int((patch.y + patch.height) * scale)),
            max(x0 + 1, int((patch.x + patch.width) * scale)),
        )
        if patch.status == tiling.STATUS_FLAGGED:
            colour = np.array(tiling.FLAGGED_COLOUR, np.float32)
        else:
            colour = np.array(tiling.colour_of(patch.positive_probability or 0.0), np.float32)
        tinted[y0:y1, x0:x1] = (1 - tiling.MAP_ALPHA) * picture[
            y0:y1, x0:x1
        ] + tiling.MAP_ALPHA * colour
        if patch.label == 1:
            outlines.append((x0, y0, x1 - 1, y1 - 1))
    result = Image.fromarray(tinted.astype(np.uint8))
    draw = ImageDraw.Draw(result)
    for box in outlines:
        draw.rectangle(box, outline=OUTLINE_LABELLED, width=1)
    for patch in mosaic.patches:
        if patch.status == tiling.STATUS_UNCERTAIN:
            tiling.dashed_box(
                draw,
                patch.x * scale,
                patch.y * scale,
                (patch.x + patch.width) * scale - 1,
                (patch.y + patch.height) * scale - 1,
            )
    if not legend:
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
        return buffer.getvalue()
    return tiling.with_legend(
        result,
        mosaic.positive_class,
        mosaic.counts(),
        research_only + " Thin black outline: labelled IDC in the file name.",
        boxes="",
    )


def layers(
    mosaic: Mosaic, display_side: int = MOSAIC_DISPLAY_SIDE
) -> tuple[bytes, bytes, bytes, float]:
    """(image, overlay, marks, scale) for the deep-zoom viewer: the slide rebuilt from its
    patches (PNG), each patch's colour by its positive probability or grey where not assessed
    (RGBA, transparent between patches), the dashed "refer" outlines (RGBA), and the scale
    of these pictures to slide pixels."""
    canvas = Image.new("RGB", (mosaic.width, mosaic.height), "white")
    for patch in mosaic.patches:
        with Image.open(io.BytesIO(patch.data)) as source:
            canvas.paste(source.convert("RGB"), (patch.x, patch.y))
    scale = min(1.0, display_side / max(canvas.size))
    size = (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale)))
    picture = canvas.resize(size, Image.BILINEAR) if scale < 1.0 else canvas
    tint = np.zeros((size[1], size[0], 4), np.uint8)
    for patch in mosaic.patches:
        y0, x0 = int(patch.y * scale), int(patch.x * scale)
        y1, x1 = (
            max(y0 + 1, int((patch.y + patch.height) * scale)),
            max(x0 + 1, int((patch.x + patch.width) * scale)),
        )
        colour = (
            tiling.FLAGGED_COLOUR
            if patch.status == tiling.STATUS_FLAGGED
            else tiling.colour_of(patch.positive_probability or 0.0)
        )
        tint[y0:y1, x0:x1] = (*colour, 255)
    refer = [
        (p.x, p.y, p.width, p.height) for p in mosaic.patches if p.status == tiling.STATUS_UNCERTAIN
    ]
    marks = tiling.marks_png(mosaic.width, mosaic.height, refer)
    return tiling._png(picture), tiling._png(Image.fromarray(tint, "RGBA")), marks, scale


def top_patches(mosaic: Mosaic, k: int = tiling.TOP_REGIONS) -> list[dict[str, Any]]:
    """The ``k`` answered patches with the highest positive probability, as slide boxes."""
    answered = sorted(
        (p for p in mosaic.patches if p.status in tiling.ANSWERED),
        key=lambda p: -(p.positive_probability or 0.0),
    )
    return [
        {
            "rank": i + 1,
            "x": p.x,
            "y": p.y,
            "width": p.width,
            "height": p.height,
            "file": p.name,
            "positive_probability": p.positive_probability,
            "positive": p.positive,
            "status": p.status,
            "label": p.label,
        }
        for i, p in enumerate(answered[:k])
    ]
