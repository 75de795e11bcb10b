"""Finished maps and mosaics kept on disk, so their pages can be bookmarked and reloaded.

``webapp.wholeslide`` calls :func:`save` after a map or mosaic is made (the form then
redirects to ``/map/<id>`` or ``/mosaic/<id>``) and :func:`load` / :func:`picture_path`
to show or export one. A result is a few files in the app's instance folder
(``RESULTS_DIR``, default ``<instance>/results``): ``<kind>-<id>.json`` (the JSON API's
body) and ``<kind>-<id>.<name>.png`` for each of its pictures (``PICTURES``: the export
with its legend, the image itself, the probability overlay and the refer marks the
deep-zoom viewer lays over it). Ids are 128 random bits: a result is found only by
whoever was given its address. The store is bounded: past ``RESULTS_MAX_COUNT`` results or
``RESULTS_MAX_BYTES`` bytes the oldest are deleted, so the folder never grows without end.
Files are written whole (temporary name, then rename): a reader never sees half a result.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
from typing import Any

from flask import current_app
from werkzeug.exceptions import NotFound

log = logging.getLogger(__name__)

KINDS = ("map", "mosaic")
PICTURES = ("picture", "image", "overlay", "marks")
ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_MAX_COUNT = 200  # results kept (each a JSON body and a PNG)
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_lock = threading.Lock()


def root() -> str:
    config = current_app.config
    return config.get("RESULTS_DIR") or os.path.join(current_app.instance_path, "results")


def _path(kind: str, result_id: str, suffix: str) -> str:
    if kind not in KINDS or not ID_PATTERN.match(result_id or ""):
        raise NotFound(f"no such {kind} result")
    return os.path.join(root(), f"{kind}-{result_id}{suffix}")


def _write(path: str, data: bytes) -> None:
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def save(kind: str, body: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """Stores a finished result and its PNG pictures (names from ``PICTURES``); returns its
    id. The oldest results go past the bounds."""
    result_id = secrets.token_hex(16)
    os.makedirs(root(), exist_ok=True)
    for name, png in pictures.items():
        if name not in PICTURES:
            raise ValueError(f"picture name {name!r}; expected one of {PICTURES}")
        _write(_path(kind, result_id, f".{name}.png"), png)
    _write(
        _path(kind, result_id, ".json"),
        json.dumps({**body, "id": result_id, "kind": kind}).encode("utf-8"),
    )
    prune()
    return result_id


def load(kind: str, result_id: str) -> dict[str, Any]:
    """The stored body. Raises NotFound (404) for an unknown, malformed or pruned id."""
    path = _path(kind, result_id, ".json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise NotFound(
            f"this {kind} result is no longer kept (results are kept until "
            f"{max_count()} newer ones replace them); make it again"
        ) from None


def picture_path(kind: str, result_id: str, name: str = "picture") -> str:
    if name not in PICTURES:
        raise NotFound(f"no picture {name!r}")
    path = _path(kind, result_id, f".{name}.png")
    if not os.path.exists(path):
        raise NotFound(f"this {kind} result is no longer kept; make it again")
    return path


def max_count() -> int:
    return int(current_app.config.get("RESULTS_MAX_COUNT") or DEFAULT_MAX_COUNT)


def prune(max_results: int | None = None, max_bytes: int | None = None) -> int:
    """Deletes the oldest results past the bounds; returns how many were deleted."""
    max_results = max_results or max_count()
    max_bytes = max_bytes or int(current_app.config.get("RESULTS_MAX_BYTES") or DEFAULT_MAX_BYTES)
    with _lock:
        folder = root()
        groups: dict[str, list] = {}
        for name in os.listdir(folder):
            stem = name.split(".", 1)[0]
            if name.endswith((".json", ".png")) and "-" in stem:
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                groups.setdefault(stem, []).append((path, stat.st_mtime, stat.st_size))
        ordered = sorted(
            groups.items(), key=lambda item: -max(m for _, m, _ in item[1])
        )  # newest first
        kept_bytes, deleted = 0, 0
        for index, (_, files) in enumerate(ordered):
            kept_bytes += sum(size for _, _, size in files)
            if index >= max_results or (index > 0 and kept_bytes > max_bytes):
                for path, _, _ in files:
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        pass
                deleted += 1
        if deleted:
            log.info("results store: deleted the %d oldest results", deleted)
        return deleted
