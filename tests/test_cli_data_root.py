"""A wrong ``--data-root`` given to `breastdx demo` or `breastdx cv` (breastdx_cli/main.py,
lab/cv.py) is one line naming the path, exit 2, before TensorFlow or TFX load: each case is
the console script in its own process, about a second."""

from __future__ import annotations

import console_script
import pytest


@pytest.mark.parametrize(
    ("verb", "kind", "message"),
    [
        ("demo", "missing", "does not exist or is not a folder"),
        ("demo", "file", "does not exist or is not a folder"),
        ("demo", "empty", "is empty"),
        ("cv", "missing", "does not exist or is not a folder"),
        ("cv", "file", "does not exist or is not a folder"),
    ],
)
def test_a_wrong_data_root_is_one_line_before_tensorflow_loads(tmp_path, verb, kind, message):
    root = tmp_path / "images"
    if kind == "file":
        root.write_text("not a folder")
    elif kind == "empty":
        root.mkdir()
    stderr = console_script.early_user_error(
        verb, "--data-root", str(root), "--workdir", str(tmp_path / "w")
    )
    assert stderr.splitlines() == [f"error: image root {str(root)!r} {message}"], stderr
