"""Folders for executors' outputs, on local disks and on object stores alike.

Called by the project's executors and Trainer modules wherever they would call
``tf.io.gfile.makedirs``. On an object store (gs://, s3://) a folder is only a key prefix:
objects written under it need none, and TensorFlow's GCS file system answers ``makedirs``
with a zero-byte ``<folder>/`` marker object, which KFP's launcher later downloads as a
*file* and then cannot create the folder's contents beneath it (pipeline/compat/kfp_launcher.py
says how; pipeline/compat/kfp_shim.py fix 6 deletes the markers other code writes).
"""

from __future__ import annotations

import os

from breastdx_core.contract import OBJECT_STORE_SCHEMES


def make_folder(path: str) -> None:
    """``makedirs`` on a local path; nothing on an object store, where it would write markers."""
    if str(path).startswith(OBJECT_STORE_SCHEMES):
        return
    import tensorflow as tf

    tf.io.gfile.makedirs(os.fspath(path))
