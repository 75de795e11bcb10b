"""Checks an image root before the pipeline starts, with one clear line on failure.

The runners and the CLI call `check()`; the pipeline itself would otherwise fail
minutes later, deep in a component's log. What passes here can still contain bad
files: ImageIngest counts those in its report and goes on. Neither function loads
TensorFlow for a local root (`breastdx cv` calls `check_root` first, `breastdx demo`
`check` through local_runner.check_data): a wrong data root is one line at once.
"""

from __future__ import annotations

import collections
import dataclasses

from breastdx_core import errors, image_files
from breastdx_core.contract import Task
from components.image_ingest import layouts


class PreflightError(errors.UserError):
    """The image root cannot feed the pipeline; the message says what to fix."""


@dataclasses.dataclass
class Preflight:
    layout: str
    candidates: int
    skipped: dict[str, int]


def check_root(root: str, task: Task, layout: str = "auto") -> str:
    """The layout `check` reads ``root`` as, from its folders alone (no file is read).

    Raises:
        PreflightError: the root is missing, not a folder, empty, or in no known layout.
    """
    try:
        return layouts.resolve(root, task, layout)
    except layouts.LayoutError as err:
        raise PreflightError(str(err)) from None


def check(root: str, task: Task, layout: str = "auto") -> Preflight:
    """Raises PreflightError for a missing or empty root, no images, or labels the task
    does not know; returns what the scan found otherwise."""
    resolved = check_root(root, task, layout)
    try:
        verdicts = list(layouts.scan(root, task, resolved))
    except layouts.LayoutError as err:
        raise PreflightError(str(err)) from None
    candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
    skipped = collections.Counter(v.reason for v in verdicts if isinstance(v, layouts.Skipped))
    unknown = sorted(
        {
            v.detail
            for v in verdicts
            if isinstance(v, layouts.Skipped) and v.reason == "unknown_label"
        }
    )
    if unknown:
        raise PreflightError(
            f"{root}: labels the task {task.name!r} does not know ({task.name} classes: "
            f"{', '.join(task.class_names)}): {'; '.join(unknown[:3])}"
            f"{' ...' if len(unknown) > 3 else ''}. Choose the right task (--task) or fix the labels."
        )
    for candidate in candidates:  # stop at the first real image
        with layouts.open_binary(candidate.path) as handle:
            if image_files.sniff(handle.read(16)) is not None:
                return Preflight(resolved, len(candidates), dict(skipped))
    raise PreflightError(
        f"{root}: no images found in the {resolved} layout ({len(verdicts)} files, "
        f"{len(candidates)} in label folders, none a PNG/JPEG/GIF/BMP)"
    )
