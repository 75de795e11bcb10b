"""What a task of `breastdx pipeline dry-run` meets on an open-source KFP 2 cluster, here.

Called by pipeline/compat/dry_run.py: it starts every container task of a KFP package through
``python -m pipeline.compat.kfp_launcher TASK.json``, as the uid of the pipeline image, and puts
`record_directory_markers` into the task processes (their sitecustomize). Two stand-ins:

- `ObjectStore`, the bucket with GCS's semantics: a flat namespace of objects listed by
  key prefix, in key order, with the zero-byte ``dir/`` marker objects TensorFlow's GCS file
  system writes on every ``makedirs``/``mkdir`` (objects are files under a local folder;
  markers, which a folder tree cannot hold beside the folder itself, are kept in a log).
- `launch`, KFP's launcher (kubeflow/pipelines backend/src/v2/component/launcher_v2.go and
  objectstore/object_store.go, releases up to 2.16): every input artifact is downloaded
  into the pod, blob by blob, under ``/gcs/<bucket>/<key>``; each object's local path is
  ``filepath.Join(localDir, filepath.Rel(prefix, key))`` behind an ``os.MkdirAll`` of its
  folder, so a marker ``<uri>/`` becomes a *file* at the artifact's own path and the next
  object under it fails ("not a directory"; kubeflow/pipelines#13476, fix PR #13537). The
  launcher then makes the output artifacts' local folders, runs the command and uploads what
  the command left there. ``/gcs``, ``/minio`` and ``/s3`` are writable volumes from KFP
  2.3.0 on (kubeflow/pipelines#10857); on 2.2.0 they are folders of the image's root file
  system, which a non-root uid cannot write unless the image made them its own.
"""

from __future__ import annotations

import builtins
import json
import os
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

from breastdx_core import errors

# deploy/pipeline.Dockerfile: `useradd --uid 10001 --gid 0`, `USER 10001`.
IMAGE_UID, IMAGE_GID = 10001, 0
# Where KFP's launcher writes in the pod (LocalPathForURI: gs:// -> /gcs/, minio:// -> /minio/,
# s3:// -> /s3/).
LAUNCHER_MOUNTS = ("gcs", "minio", "s3")
STORE_ENV = "BREASTDX_DRY_RUN_STORE"  # "<storage root>|<marker log>" for the task processes
FILE_IO = "tensorflow.python.lib.io.file_io"
# linux/capability.h and linux/prctl.h
CAP_DAC_READ_SEARCH, LINUX_CAPABILITY_VERSION_3 = 2, 0x20080522
PR_SET_KEEPCAPS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 8, 47, 2


class LauncherError(errors.BreastdxError, RuntimeError):
    """What KFP's launcher would fail the task with (one line)."""


def image_user(uid: int = IMAGE_UID, gid: int = IMAGE_GID) -> Callable[[], None]:
    """A ``preexec_fn`` that turns a child of this (root) process into the image's user:
    that uid and gid, no supplementary groups, so every write is checked as in the pod.

    Reads stay open: the child keeps one capability, ``CAP_DAC_READ_SEARCH`` (as an ambient
    capability, so it survives ``exec``), because the interpreter and project it must read
    stand in for the image's and may sit in root's home here. Writing anywhere the uid may
    not write still fails, and so does ``access(2)`` (TensorFlow's ``exists``/``isdir``),
    which ignores capabilities: the bucket and task folders must be the uid's to reach.
    Without the capability (not root) the child is the uid alone."""

    def become() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        os.setgroups([])
        os.setgid(gid)
        libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setuid(uid)
        bit = 1 << CAP_DAC_READ_SEARCH
        header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)(bit, bit, bit, 0, 0, 0)  # effective, permitted, inheritable
        if libc.capset(header, data) == 0:
            libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0)

    return become


def go_rel(base: str, target: str) -> str:
    """Go's ``filepath.Rel`` for the relative keys of object_store.go (both cleaned first:
    ``Rel("a/b", "a/b/")`` is ``"."``)."""
    return posixpath.relpath(posixpath.normpath("/" + target), posixpath.normpath("/" + base))


class ObjectStore:
    """A bucket with GCS's semantics over ``<root>/<bucket>/<key>`` (see the module docstring).

    Args:
        root: the folder that stands in for ``gs://`` (``gs://b/k`` is ``<root>/b/k``).
        marker_log: where the marker objects are kept (outside ``root``, so that no task
            lists it): lines ``+<bucket>/<key>/`` (written) and ``-...`` (deleted).
    """

    def __init__(self, root: str, marker_log: str):
        self.root = os.path.abspath(root)
        self.marker_log = os.path.abspath(marker_log)

    @classmethod
    def from_env(cls) -> ObjectStore | None:
        value = os.environ.get(STORE_ENV)
        if not value:
            return None
        root, _, log_path = value.partition("|")
        return cls(root, log_path)

    def env_value(self) -> str:
        return f"{self.root}|{self.marker_log}"

    # --- names -------------------------------------------------------------------------
    def object_name(self, path_or_uri: str) -> str | None:
        """``<bucket>/<key>`` of a ``gs://`` URI or a path under the root; None outside."""
        if path_or_uri.startswith("gs://"):
            return path_or_uri[len("gs://") :]
        path = os.path.abspath(path_or_uri)
        if path == self.root or not path.startswith(self.root + os.sep):
            return None
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def local(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    # --- markers ---------------------------------------------------------------------
    def _log(self, lines: builtins.list[str]) -> None:
        if lines:
            with open(self.marker_log, "a") as handle:  # one short append per call
                handle.write("".join(line + "\n" for line in lines))

    def markers(self) -> builtins.list[str]:
        """Every marker object that exists now (``<bucket>/<key>/``)."""
        alive: dict[str, bool] = {}
        if os.path.exists(self.marker_log):
            with open(self.marker_log) as handle:
                for line in handle:
                    line = line.rstrip("\n")
                    if line:
                        alive[line[1:]] = line[0] == "+"
        return sorted(name for name, is_alive in alive.items() if is_alive)

    def record_makedirs(self, path: str, recursive: bool = True) -> None:
        """Writes the markers TensorFlow's GCS file system writes for ``makedirs(path)``:
        one for each level below the bucket that does not exist yet."""
        name = self.object_name(path)
        if not name or "/" not in name.strip("/"):
            return  # outside the store, or the bucket itself
        parts = name.strip("/").split("/")
        levels = range(2, len(parts) + 1) if recursive else [len(parts)]
        self._log(
            [
                "+" + "/".join(parts[:n]) + "/"
                for n in levels
                if not os.path.isdir(self.local("/".join(parts[:n])))
            ]
        )

    def delete_markers(self, path_or_uri: str) -> int:
        """Deletes the marker objects at and under an artifact's URI; returns how many."""
        name = self.object_name(path_or_uri)
        if name is None:
            return 0
        prefix = name.rstrip("/") + "/"
        doomed = [m for m in self.markers() if m.startswith(prefix)]
        self._log(["-" + m for m in doomed])
        return len(doomed)

    # --- the flat namespace ----------------------------------------------------------------
    def list(self, bucket: str, prefix: str) -> builtins.list[tuple[str, int]]:
        """(key, size) of every object whose key starts with ``prefix``, in key order."""
        found = {}
        base = self.local(bucket)
        # Objects with the prefix sit under the prefix's folder (or beside it, for keys that
        # merely start with it: "model" also lists "model_run/...").
        start = os.path.dirname(os.path.join(base, *prefix.split("/")))
        for folder, _, files in os.walk(start) if os.path.isdir(start) else ():
            for file_name in files:
                key = os.path.relpath(os.path.join(folder, file_name), base).replace(os.sep, "/")
                if key.startswith(prefix):
                    found[key] = os.path.getsize(os.path.join(folder, file_name))
        for marker in self.markers():
            marker_bucket, _, key = marker.partition("/")
            if marker_bucket == bucket and key.startswith(prefix):
                found.setdefault(key, 0)
        return sorted(found.items())


def download_blob(store: ObjectStore, bucket: str, blob_dir: str, local_dir: str) -> int:
    """KFP's ``objectstore.DownloadBlob`` (releases up to 2.16): every object under the
    prefix to ``local_dir/Rel(prefix, key)``. Returns how many objects were written.

    Raises:
        LauncherError: as the launcher fails, with its words.
    """
    count = 0
    for key, _ in store.list(bucket, blob_dir):
        local_path = os.path.normpath(os.path.join(local_dir, go_rel(blob_dir, key)))
        folder = os.path.dirname(local_path)
        try:
            os.makedirs(folder, 0o755, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise LauncherError(
                f"failed to download input artifact: downloadFile(): unable to complete copying "
                f'"{key}" to local storage "{local_path}": failed to create local directory '
                f'"{folder}": mkdir {folder}: not a directory'
            ) from None
        except PermissionError:
            raise LauncherError(
                f"failed to download input artifact: mkdir {folder}: permission "
                f"denied (uid {os.getuid()}: no writable volume of the pod)"
            ) from None
        source = store.local(f"{bucket}/{key}")
        try:
            if key.endswith("/"):  # a marker: a zero-byte object
                open(local_path, "wb").close()
            else:
                shutil.copyfile(source, local_path)
        except IsADirectoryError:
            raise LauncherError(
                f"failed to download input artifact: unable to open local file "
                f'"{local_path}" for writing: is a directory'
            ) from None
        except PermissionError:
            raise LauncherError(
                f"failed to download input artifact: open {local_path}: permission "
                f"denied (uid {os.getuid()})"
            ) from None
        count += 1
    return count


def _split(uri: str) -> tuple[str, str, str]:
    """(mount, bucket, key) of a gs://, minio:// or s3:// URI."""
    for scheme in ("gs", "minio", "s3"):
        if uri.startswith(f"{scheme}://"):
            bucket, _, key = uri[len(scheme) + 3 :].partition("/")
            return ("gcs" if scheme == "gs" else scheme), bucket, key
    raise LauncherError(
        f"unsupported artifact URI {uri!r}: the launcher reads gs://, minio:// and s3:// only"
    )


def _artifacts(executor_input: dict[str, Any], side: str) -> Iterator[tuple[str, str]]:
    for name, listed in executor_input.get(side, {}).get("artifacts", {}).items():
        for artifact in listed.get("artifacts", []):
            if artifact.get("uri"):
                yield name, artifact["uri"]


def launch(spec: dict[str, Any]) -> int:
    """One task as KFP's launcher runs it (this process already has the image's uid).

    ``spec``: ``executor_input`` (URIs as the cluster sees them, gs://…), ``pod_root`` (the
    folder standing in for the pod's ``/``), ``store`` (`ObjectStore.env_value`),
    ``command`` (argv), ``cwd``. Returns the command's exit code.
    """
    store = ObjectStore(*spec["store"].split("|", 1))
    pod_root = spec["pod_root"]
    executor_input = spec["executor_input"]
    for name, uri in _artifacts(executor_input, "inputs"):
        mount, bucket, key = _split(uri)
        local_dir = os.path.join(pod_root, mount, bucket, *key.split("/"))
        try:
            download_blob(store, bucket, key, local_dir)
        except LauncherError as err:
            raise LauncherError(f"input {name} ({uri}): {err}") from None
    outputs = list(_artifacts(executor_input, "outputs"))
    for name, uri in outputs:
        mount, bucket, key = _split(uri)
        folder = os.path.dirname(os.path.join(pod_root, mount, bucket, *key.split("/")))
        try:
            os.makedirs(folder, exist_ok=True)
        except PermissionError:
            raise LauncherError(
                f"failed to prepare output artifact {name}: mkdir {folder}: "
                f"permission denied (uid {os.getuid()}: KFP mounts a writable "
                f"volume at /{mount} from 2.3.0 on; on older releases the image "
                "must own it)"
            ) from None
    done = subprocess.run(spec["command"], cwd=spec.get("cwd"), check=False)
    if done.returncode:
        return done.returncode
    for _name, uri in outputs:  # what the command left at the local path goes up
        mount, bucket, key = _split(uri)
        local_path = os.path.join(pod_root, mount, bucket, *key.split("/"))
        if os.path.isdir(local_path) and os.listdir(local_path):
            shutil.copytree(local_path, store.local(f"{bucket}/{key}"), dirs_exist_ok=True)
        elif os.path.isfile(local_path):
            os.makedirs(os.path.dirname(store.local(f"{bucket}/{key}")), exist_ok=True)
            shutil.copyfile(local_path, store.local(f"{bucket}/{key}"))
    return 0


def record_directory_markers(module: Any) -> None:
    """Import-time patch of TensorFlow's ``file_io`` in a dry-run task: ``makedirs`` and
    ``mkdir`` under the store write the marker objects that TF's GCS file system writes.
    (The ``tf.io.gfile`` names are bound from these when TensorFlow's API modules import.)"""
    store = ObjectStore.from_env()
    if store is None:
        return
    recursive, single = module.recursive_create_dir_v2, module.create_dir_v2

    def recursive_create_dir_v2(path):
        store.record_makedirs(os.fspath(path), recursive=True)
        return recursive(path)

    def create_dir_v2(path):
        store.record_makedirs(os.fspath(path), recursive=False)
        return single(path)

    module.recursive_create_dir_v2 = recursive_create_dir_v2
    module.create_dir_v2 = create_dir_v2


def install_in_task() -> None:
    """The dry run's task processes: the image's shim, plus the store's marker semantics
    and the store as the shim's marker cleaner (pipeline/compat/kfp_shim.py, fix 6)."""
    from pipeline.compat import kfp_shim

    store = ObjectStore.from_env()
    if store is not None:
        kfp_shim.PATCHES[FILE_IO] = record_directory_markers
        kfp_shim.set_marker_store(store)
    kfp_shim.install()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipeline.compat.kfp_launcher TASK.json", file=sys.stderr)
        return 2
    with open(argv[0]) as handle:
        spec = json.load(handle)
    try:
        return launch(spec)
    except LauncherError as err:
        print(f"launcher: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
