"""Readers for the three image-root layouts ImageIngest understands.

ImageIngest's executor (and the CLI's pre-flight check) call `scan()`: it walks an
image root and gives every file one verdict from its path alone, either a
`Candidate` (label and patient known; its bytes are checked later) or a `Skipped`
with the reason. Layouts:

* ``idc``: Kaggle IDC, ``<patient_id>/<0|1>/<patient_id>_idx5_x<X>_y<Y>_class<C>.png``.
* ``class_folders``: BUSI-style ``<class>/<class> (N).png`` with ``<class> (N)_mask.png``
  beside (masks are segmentation targets, never examples). An optional level
  ``<class>/<patient_id>/<file>`` gives the patient; without it each image is its own
  group (BUSI publishes no patient ids).
* ``manifest``: a CSV ``path,label[,patient_id]`` at the root, paths relative to it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from breastdx_core import errors
from breastdx_core.contract import Task

IDC_NAME = re.compile(
    r"^(?P<pid>.+?)_idx\d+_x(?P<x>\d+)_y(?P<y>\d+)_class(?P<cls>\d+)\.png$", re.IGNORECASE
)
MASK_NAME = re.compile(r"_mask(_\d+)?\.[A-Za-z]+$")
MANIFEST_NAMES = ("manifest.csv", "labels.csv")
MANIFEST_COLUMNS = ("path", "label")
DIGEST_CHUNK = 256  # files per thread-pool task in `deduplicate`

# Reasons a file is not ingested; the ingest report counts every one.
REASONS = {
    "empty": "zero-byte file",
    "not_an_image": "content is not an image",
    "unsupported_format": "image format the Transform graph cannot decode",
    "corrupt": "truncated or damaged image",
    "mask_file": "segmentation mask (a target, not an example)",
    "unknown_label": "label folder or value the task does not know",
    "label_conflict": "label folder and file name disagree",
    "outside_layout": "file outside the layout's folders",
    "not_in_manifest": "image file the manifest does not list",
    "missing_file": "manifest row whose file does not exist",
    "manifest_row": "manifest row without a path or label",
    "manifest_file": "the manifest itself",
    "duplicate_label_conflict": "the same bytes under two labels (every copy left out)",
    "duplicate": "the same bytes as a file of another patient (the first copy is kept)",
}


class LayoutError(errors.UserError):
    """The image root cannot be read as any (or the named) layout."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    path: str  # absolute
    rel: str  # relative to the root, '/'-separated
    label: int
    patient_id: str
    masks: tuple[str, ...] = ()  # absolute paths of its segmentation masks (class_folders)
    sha256: str = ""  # hex digest of the file's bytes (`deduplicate` fills it)


@dataclasses.dataclass(frozen=True)
class Skipped:
    rel: str
    reason: str
    detail: str


Verdict = Candidate | Skipped


class _LocalFiles:
    """The `tf.io.gfile` calls `detect` makes, answered by `os` on a local disk."""

    isdir = staticmethod(os.path.isdir)
    exists = staticmethod(os.path.exists)
    listdir = staticmethod(os.listdir)


def _files(path: str) -> Any:
    """`tf.io.gfile` for a remote path (gs://), `os` for a local one: a local root is checked
    (`detect`, `resolve`) without loading TensorFlow, so the CLI reports a wrong data root
    at once rather than after TensorFlow's ~10 s of imports."""
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile
    return _LocalFiles


def open_binary(path: str) -> Any:
    """``path`` opened for reading bytes: `open` on a local disk (no TensorFlow), TensorFlow's
    GFile on gs:// and other remote file systems."""
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.GFile(path, "rb")
    return open(path, "rb")


def _rel(root: str, path: str) -> str:
    prefix = root.rstrip("/" + os.sep) + os.sep
    if path.startswith(prefix) and "://" not in root and os.sep + ".." + os.sep not in path:
        rel = path[len(prefix) :]  # walk_files' paths: root + names (relpath: ~30 us each)
    else:
        rel = os.path.relpath(path, root)
    return rel.replace(os.sep, "/")


def walk_files(root: str) -> list[str]:
    """Every file under root (absolute paths, sorted); works on gs:// roots too.

    Symbolic links to folders are followed (a data set assembled from mounts links its
    patient folders); a link back to a folder already walked is not (no endless loop).
    """
    files = []
    if "://" in root:
        import tensorflow as tf

        for dirpath, _dirs, names in tf.io.gfile.walk(root):
            files.extend(os.path.join(dirpath, name) for name in names)
        return sorted(files)
    seen = set()
    for dirpath, dirs, names in os.walk(
        root, followlinks=True
    ):  # os.walk: 3x faster on local disks
        real = os.path.realpath(dirpath)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        files.extend(os.path.join(dirpath, name) for name in names)
    return sorted(files)


def _digest(path: str) -> str:
    with open_binary(path) as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def deduplicate(
    candidates: list[Candidate], workers: int = 16
) -> tuple[list[Candidate], list[Skipped], dict[str, Any]]:
    """Hashes every candidate's bytes (SHA-256) and resolves exact duplicates.

    * the same bytes under different labels (BUSI's ``malignant (145).png`` and ``benign
      (433).png``): a label conflict, every copy left out (which label is true is unknown);
    * the same bytes, same label, different patients: the first copy (sorted path) is
      kept and the others are left out, so no image is in two splits (a patient's
      images share one split group; copies within one patient are kept, they stay in it).

    Unreadable files keep an empty digest and are judged later, when they are read.

    Returns:
        (kept candidates with ``sha256`` set, skipped copies, a summary for the ingest
        report: ``label_conflicts`` [{sha256, files, labels}], ``cross_patient`` [...],
        ``same_patient_copies`` count).
    """
    from concurrent.futures import ThreadPoolExecutor

    import tensorflow as tf

    def digests_of(chunk: list[Candidate]) -> list[str]:
        out = []
        for candidate in chunk:
            try:
                out.append(_digest(candidate.path))
            except (OSError, tf.errors.OpError):
                out.append("")
        return out

    # I/O bound: reads overlap, and reading and SHA-256 release the GIL. Whole chunks per
    # task: a task per file cost ~50 us in the pool's own locking (2.5x the read and hash
    # of a 5 KB file from the page cache; bench/ingest.py).
    chunk = max(1, min(DIGEST_CHUNK, len(candidates) // workers))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = [
            d
            for part in pool.map(
                digests_of, [candidates[i : i + chunk] for i in range(0, len(candidates), chunk)]
            )
            for d in part
        ]
    hashed = [dataclasses.replace(c, sha256=d) for c, d in zip(candidates, digests)]
    drop, summary = resolve_duplicates(hashed)
    return [c for c in hashed if c.rel not in drop], list(drop.values()), summary


def resolve_duplicates(hashed: Sequence[Candidate]) -> tuple[dict[str, Skipped], dict[str, Any]]:
    """`deduplicate`'s rules on candidates whose ``sha256`` is known (an empty one is no
    one's duplicate); ImageExampleGen's executor applies them to the files it read.

    Returns:
        ({relative path: Skipped} of every copy left out, the report's summary).
    """
    groups: dict[str, list[Candidate]] = {}
    for candidate in hashed:
        if candidate.sha256:
            groups.setdefault(candidate.sha256, []).append(candidate)
    drop: dict[str, Skipped] = {}
    summary: dict[str, Any] = {"label_conflicts": [], "cross_patient": [], "same_patient_copies": 0}
    for sha, members in groups.items():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda c: c.rel)
        files = [m.rel for m in members]
        if len({m.label for m in members}) > 1:
            summary["label_conflicts"].append(
                {"sha256": sha, "files": files, "labels": [m.label for m in members]}
            )
            for m in members:
                others = ", ".join(f for f in files if f != m.rel)
                drop[m.rel] = Skipped(
                    m.rel,
                    "duplicate_label_conflict",
                    f"same bytes as {others} with another label (sha256 {sha[:12]})",
                )
            continue
        first = members[0]
        others = [m for m in members[1:] if m.patient_id != first.patient_id]
        summary["same_patient_copies"] += len(members) - 1 - len(others)
        if others:
            summary["cross_patient"].append(
                {"sha256": sha, "kept": first.rel, "left_out": [m.rel for m in others]}
            )
        for m in others:
            drop[m.rel] = Skipped(
                m.rel,
                "duplicate",
                f"same bytes as {first.rel} (patient {first.patient_id}; sha256 {sha[:12]})",
            )
    return drop, summary


def fingerprint(root: str) -> str:
    """A digest of every file's relative path, size and modification time under root:
    it changes when a file is added, removed or rewritten (the cache key of ImageIngest)."""
    # TensorFlow's stat (whole-second mtimes), not os.stat: earlier runs' cache keys hold.
    import tensorflow as tf

    digest = hashlib.sha256()
    for path in walk_files(root):
        stat = tf.io.gfile.stat(path)
        digest.update(f"{_rel(root, path)}\0{stat.length}\0{stat.mtime_nsec}\n".encode())
    return digest.hexdigest()


def find_manifest(root: str) -> str | None:
    for name in MANIFEST_NAMES:
        path = os.path.join(root, name)
        if _files(path).exists(path):
            return path
    return None


def detect(root: str, task: Task) -> str:
    """The layout of ``root``: "manifest", "idc" or "class_folders".

    Raises:
        LayoutError: root is missing, empty or in no known layout.
    """
    files = _files(root)
    if not files.isdir(root):
        raise LayoutError(f"image root {root!r} does not exist or is not a folder")
    entries = files.listdir(root)
    if not entries:
        raise LayoutError(f"image root {root!r} is empty")
    if find_manifest(root):
        return "manifest"
    subdirs = [e.rstrip("/") for e in entries if files.isdir(os.path.join(root, e))]
    for sub in subdirs:
        inner = [e.rstrip("/") for e in files.listdir(os.path.join(root, sub))]
        if any(
            task.label_of(e) is not None and files.isdir(os.path.join(root, sub, e)) for e in inner
        ):
            if task.label_of(sub) is None:  # <patient>/<label>/ rather than <class>/<patient>/
                return "idc"
    if subdirs:
        return "class_folders"
    raise LayoutError(
        f"image root {root!r} has no sub-folders and no {' or '.join(MANIFEST_NAMES)}: expected "
        "<patient_id>/<0|1>/*.png (IDC), <class>/*.png (class folders) or a CSV manifest"
    )


def _scan_idc(root: str, task: Task) -> Iterator[Verdict]:
    for path in walk_files(root):
        rel = _rel(root, path)
        parts = rel.split("/")
        name = parts[-1]
        if len(parts) != 3:
            yield Skipped(rel, "outside_layout", "expected <patient_id>/<label>/<file>")
            continue
        patient_id, folder, _ = parts
        label = task.label_of(folder)
        if label is None:
            yield Skipped(
                rel,
                "unknown_label",
                f"label folder {folder!r} is not one of {sorted(task.folder_labels)}",
            )
            continue
        match = IDC_NAME.match(name)
        if match and task.label_of(match.group("cls")) != label:
            yield Skipped(
                rel,
                "label_conflict",
                f"folder says {folder}, file name says class{match.group('cls')}",
            )
            continue
        yield Candidate(path, rel, label, patient_id)


def mask_index(files: list[str]) -> dict[str, tuple[str, ...]]:
    """Image path stem -> its mask files (``<stem>_mask.<ext>``, then ``<stem>_mask_<N>.<ext>``
    in N order; BUSI gives some images two or three masks)."""
    index: dict[str, list[str]] = {}
    for path in files:
        match = MASK_NAME.search(path)
        if match:
            index.setdefault(path[: match.start()], []).append(path)
    return {stem: tuple(sorted(paths, key=lambda p: (len(p), p))) for stem, paths in index.items()}


def _scan_class_folders(root: str, task: Task) -> Iterator[Verdict]:
    all_files = walk_files(root)
    masks = mask_index(all_files)
    for path in all_files:
        rel = _rel(root, path)
        parts = rel.split("/")
        if len(parts) not in (2, 3):
            yield Skipped(
                rel, "outside_layout", "expected <class>/<file> or <class>/<patient_id>/<file>"
            )
            continue
        if MASK_NAME.search(parts[-1]):
            yield Skipped(rel, "mask_file", "segmentation mask")
            continue
        label = task.label_of(parts[0])
        if label is None:
            yield Skipped(
                rel,
                "unknown_label",
                f"class folder {parts[0]!r} is not one of {list(task.class_names)}",
            )
            continue
        # BUSI has no patient ids: each image is its own group unless a patient level exists.
        patient_id = parts[1] if len(parts) == 3 else os.path.splitext(parts[1])[0]
        yield Candidate(path, rel, label, patient_id, masks.get(os.path.splitext(path)[0], ()))


def _scan_manifest(root: str, task: Task) -> Iterator[Verdict]:
    manifest = find_manifest(root)
    if manifest is None:
        raise LayoutError(f"no {' or '.join(MANIFEST_NAMES)} in {root!r}")
    import tensorflow as tf

    listed: dict[str, None] = {}
    with tf.io.gfile.GFile(manifest) as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if not all(c in columns for c in MANIFEST_COLUMNS):
            raise LayoutError(
                f"{manifest}: header must have columns path,label[,patient_id]; found {columns}"
            )
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            where = f"{os.path.basename(manifest)}:{line}"
            if not row.get("path") or not row.get("label"):
                yield Skipped(where, "manifest_row", f"row {line} lacks a path or a label")
                continue
            path = row["path"] if os.path.isabs(row["path"]) else os.path.join(root, row["path"])
            path = os.path.normpath(path)
            rel = _rel(root, path)
            listed[path] = None
            if not tf.io.gfile.exists(path):
                yield Skipped(rel, "missing_file", f"listed at {where}, not found")
                continue
            label = task.label_of(row["label"])
            if label is None:
                yield Skipped(
                    rel,
                    "unknown_label",
                    f"label {row['label']!r} at {where} is not one of {list(task.class_names)}",
                )
                continue
            patient_id = (
                row.get("patient_id") or os.path.basename(os.path.dirname(path)) or "unknown"
            )
            yield Candidate(path, rel, label, patient_id)
    for path in walk_files(root):
        if path == os.path.normpath(manifest):
            yield Skipped(_rel(root, path), "manifest_file", "the manifest")
        elif os.path.normpath(path) not in listed:
            yield Skipped(_rel(root, path), "not_in_manifest", "not listed in the manifest")


_SCANNERS = {"idc": _scan_idc, "class_folders": _scan_class_folders, "manifest": _scan_manifest}


def resolve(root: str, task: Task, layout: str = "auto") -> str:
    """The layout `scan` reads ``root`` as: `detect`'s for "auto", else the named one once
    ``root`` is a folder. Reads no file, and no TensorFlow for a local root.

    Raises:
        LayoutError: the root is missing, empty, or in no known (or an unknown named) layout.
    """
    if layout == "auto":
        return detect(root, task)
    if not _files(root).isdir(root):
        raise LayoutError(f"image root {root!r} does not exist or is not a folder")
    if layout not in _SCANNERS:
        raise LayoutError(f"unknown layout {layout!r}; known: {', '.join(_SCANNERS)}")
    return layout


def scan(root: str, task: Task, layout: str = "auto") -> Iterator[Verdict]:
    """One verdict per file under ``root`` (and per manifest row), from paths alone.

    Raises:
        LayoutError: the root is missing, empty, or in no known layout.
    """
    return _SCANNERS[resolve(root, task, layout)](root, task)
