"""Which model versions are served: a file-system source like TF Serving's.

``serving.server.create_app`` builds one :class:`ModelStore` per process and starts its
poller thread. The poller scans ``<serving_root>/<model_name>/<integer version>/`` every
``poll_seconds`` (TF Serving's ``--file_system_poll_wait_seconds``), loads a new version
fully (``tf.saved_model.load`` plus a warm-up of nothing: loading is enough to serve)
before it becomes visible, and drops versions that left the policy. A request takes a
reference to a :class:`LoadedVersion` under the lock; Python keeps that object (and its
graph) alive until the request lets go, so a version swap never fails a request in flight.

Version labels (``stable``, ``canary``...) come from an optional config file, either JSON
(``{"model": {"labels": {"stable": 1}, "policy": "latest", "num_versions": 2}}``) or TF
Serving's model config text format (``model_config_list { config { name: ... version_labels
{ key: "stable" value: 1 } } }``); the file is re-read when it changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from typing import Any

import tensorflow as tf

from breastdx_core import contract, errors, model_card
from serving.settings import DEFAULT_NUM_VERSIONS, DEFAULT_POLL_SECONDS

log = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"
POLICY_LATEST = "latest"
POLICY_ALL = "all"
POLICY_SPECIFIC = "specific"

STATE_LOADING = "LOADING"
STATE_AVAILABLE = "AVAILABLE"
STATE_UNLOADING = "UNLOADING"
STATE_END = "END"


class ServingError(errors.BreastdxError):
    """A request the store cannot answer; ``status`` is the HTTP code TF Serving would use."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status
        self.http_status = status


@dataclasses.dataclass
class ModelPolicy:
    """How one model's versions are chosen (TF Serving's ``model_version_policy``)."""

    policy: str = POLICY_LATEST
    num_versions: int = DEFAULT_NUM_VERSIONS
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = dataclasses.field(default_factory=dict)


class LoadedVersion:
    """One loaded SavedModel version, its signatures and its model card.

    Attributes:
        name: model name.
        version: integer version (the directory's name).
        path: the version directory.
        model: the object ``tf.saved_model.load`` returned.
        card: the model card dict, validated (``{}`` when the version has none).
    """

    def __init__(self, name: str, version: int, path: str):
        self.name = name
        self.version = version
        self.path = path
        self.model = tf.saved_model.load(path)
        self.signatures = dict(self.model.signatures)
        self.card = _read_card(path)
        self._in_flight = 0
        self._lock = threading.Lock()
        self.state = STATE_AVAILABLE

    def acquire(self) -> LoadedVersion:
        with self._lock:
            self._in_flight += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0 and self.state == STATE_UNLOADING:
                self.state = STATE_END
                log.info("model %s version %d unloaded", self.name, self.version)

    def retire(self) -> None:
        """Marks the version unloading; it ends once the last request in flight lets go."""
        with self._lock:
            self.state = STATE_END if self._in_flight == 0 else STATE_UNLOADING
        log.info("model %s version %d retired (%s)", self.name, self.version, self.state)

    def signature(self, name: str):
        """The concrete function of signature ``name``; ServingError 400 if absent."""
        try:
            return self.signatures[name]
        except KeyError:
            raise ServingError(
                f'Serving signature name: "{name}" not found in signature def; known: '
                f"{', '.join(sorted(self.signatures))}",
                400,
            ) from None


def _read_card(path: str) -> dict[str, Any]:
    """The version's model card, validated against the schema (breastdx_core/model_card.py);
    ``{}`` when the version has none. A card that breaks the schema stops the load
    (model_card.CardError names the field): a model is not served with a card whose
    decision rule or contract cannot be trusted."""
    card_path = os.path.join(path, contract.MODEL_CARD_RELPATH)
    if not os.path.exists(card_path):
        log.warning("no model card at %s: the version is served without a decision rule", card_path)
        return {}
    return model_card.validate(model_card.read(card_path))


def parse_config(path: str) -> dict[str, ModelPolicy]:
    """Reads a model config file, JSON or TF Serving's ModelServerConfig text format.

    Args:
        path: the file; ``.json`` files (or text starting with ``{``) are JSON.

    Returns:
        model name -> :class:`ModelPolicy`.

    Raises:
        ValueError: naming the file when it cannot be parsed.
    """
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise ValueError(f"model config {path}: not JSON ({err})") from None
        policies = {}
        for name, entry in raw.items():
            policies[name] = ModelPolicy(
                policy=entry.get("policy", POLICY_LATEST),
                num_versions=int(entry.get("num_versions", DEFAULT_NUM_VERSIONS)),
                versions=tuple(int(v) for v in entry.get("versions", ())),
                labels={str(k): int(v) for k, v in entry.get("labels", {}).items()},
            )
        return policies
    from google.protobuf import text_format  # the text format only; imported on demand
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ValueError(
            f"model config {path}: not a ModelServerConfig text proto ({err})"
        ) from None
    policies = {}
    for entry in config.model_config_list.config:
        version_policy = entry.model_version_policy
        which = version_policy.WhichOneof("policy_choice")
        policy = ModelPolicy(labels=dict(entry.version_labels))
        if which == "all":
            policy.policy = POLICY_ALL
        elif which == "specific":
            policy.policy = POLICY_SPECIFIC
            policy.versions = tuple(version_policy.specific.versions)
        elif which == "latest":
            policy.num_versions = version_policy.latest.num_versions or 1
        policies[entry.name] = policy
    return policies


class ModelStore:
    """Loads, serves and unloads the versions under a serving root.

    Args:
        serving_root: folder holding ``<model_name>/<version>/``.
        model_names: the models to serve; None serves every sub-folder of the root.
        config_path: optional model config file (labels, version policy).
        poll_seconds: how often the root and the config file are scanned.
        num_versions: versions kept by the default ``latest`` policy.
    """

    def __init__(
        self,
        serving_root: str,
        model_names: list[str] | None = None,
        config_path: str | None = None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        num_versions: int = DEFAULT_NUM_VERSIONS,
    ):
        self.serving_root = serving_root
        self.model_names = list(model_names) if model_names else None
        self.config_path = config_path
        self.poll_seconds = poll_seconds
        self.num_versions = num_versions
        self._lock = threading.Lock()
        self._served: dict[str, dict[int, LoadedVersion]] = {}
        self._loading: dict[str, set] = {}
        self._failed: dict[str, tuple[float, int]] = {}
        self._policies: dict[str, ModelPolicy] = {}
        self._config_mtime: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0

    # --- the poller -------------------------------------------------------------
    def start(self) -> ModelStore:
        """Starts the poller thread; its first scan loads what is on disk."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="model-store-poller", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_seconds * 2 + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the poller must outlive a bad directory or config file
                log.exception("model store poll failed")
            self._stop.wait(self.poll_seconds)

    def poll(self) -> None:
        """One scan: re-read the config if changed, load new versions, retire old ones."""
        self._reload_config()
        for name in self._model_names():
            wanted = self._wanted_versions(name)
            with self._lock:
                current = dict(self._served.get(name, {}))
            for version in sorted(set(wanted) - set(current), reverse=True):
                self._load(name, version)
            self._retire_stale(name, wanted)
        self.polls += 1

    def _retire_stale(self, name: str, wanted: list[int]) -> None:
        """Drops versions the policy no longer wants, availability first (TF Serving's default).

        While a wanted version failed to load (Pusher still copying, a corrupt export) the
        old ones keep serving; a version whose folder is gone goes once another one serves.
        """
        on_disk = set(self._on_disk(name))
        with self._lock:
            served = self._served.get(name, {})
            complete = all(v in served for v in wanted)
            stale = [v for v in served if v not in wanted and (complete or v not in on_disk)]
            if len(stale) == len(served):
                return  # never retire the last version serving
            retired = [served.pop(v) for v in stale]
        for loaded in retired:
            loaded.retire()

    def _reload_config(self) -> None:
        if not self.config_path:
            return
        try:
            mtime = os.path.getmtime(self.config_path)
        except OSError:
            log.warning("model config %s not found; keeping the previous one", self.config_path)
            return
        if mtime == self._config_mtime:
            return
        try:
            policies = parse_config(self.config_path)
        except (OSError, ValueError) as err:
            log.error("%s; keeping the previous config", err)
            return
        with self._lock:
            self._policies = policies
        self._config_mtime = mtime
        log.info("model config %s loaded: %s", self.config_path, sorted(policies))

    def _model_names(self) -> list[str]:
        if self.model_names:
            return self.model_names
        if self._policies:
            return sorted(self._policies)
        try:
            return sorted(
                entry
                for entry in os.listdir(self.serving_root)
                if os.path.isdir(os.path.join(self.serving_root, entry))
            )
        except OSError:
            return []

    def policy(self, name: str) -> ModelPolicy:
        with self._lock:
            return self._policies.get(name) or ModelPolicy(num_versions=self.num_versions)

    def _on_disk(self, name: str) -> list[int]:
        base = os.path.join(self.serving_root, name)
        try:
            entries = os.listdir(base)
        except OSError:
            return []
        return sorted(
            int(entry)
            for entry in entries
            if entry.isdigit() and os.path.isfile(os.path.join(base, entry, SAVED_MODEL_FILE))
        )

    def _wanted_versions(self, name: str) -> list[int]:
        on_disk = self._on_disk(name)
        policy = self.policy(name)
        if policy.policy == POLICY_ALL:
            wanted = on_disk
        elif policy.policy == POLICY_SPECIFIC:
            wanted = [v for v in on_disk if v in policy.versions]
        else:
            wanted = on_disk[-max(1, policy.num_versions) :]
        # A labelled version stays loaded even when it is older than the newest N.
        wanted += [v for v in policy.labels.values() if v in on_disk and v not in wanted]
        return sorted(wanted)

    def _load(self, name: str, version: int) -> None:
        path = os.path.join(self.serving_root, name, str(version))
        stamp = _dir_stamp(path)
        failed = self._failed.get(path)
        if failed and failed == stamp:
            return  # the same broken files: retry only once they change (Pusher still copying)
        with self._lock:
            self._loading.setdefault(name, set()).add(version)
        started = time.time()
        try:
            loaded = LoadedVersion(name, version, path)
        except Exception as err:  # a half-copied or corrupt SavedModel must not stop serving
            log.error("model %s version %d at %s failed to load: %s", name, version, path, err)
            self._failed[path] = stamp
            return
        finally:
            with self._lock:
                self._loading[name].discard(version)
        with self._lock:
            self._served.setdefault(name, {})[version] = loaded
        self._failed.pop(path, None)
        log.info(
            "model %s version %d loaded in %.1f s from %s",
            name,
            version,
            time.time() - started,
            path,
        )

    # --- lookups for requests -------------------------------------------------
    def has_any(self) -> bool:
        with self._lock:
            return any(self._served.values())

    def known(self, name: str) -> bool:
        return name in self._model_names()

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[tuple[int, str]]:
        """(version, state) pairs as TF Serving's GetModelStatus lists them, newest first.

        Raises:
            ServingError: 404 for an unknown model, version or label; 503 while nothing loaded.
        """
        if label is not None:
            version = self._label_version(name, label)
        with self._lock:
            rows = {v: loaded.state for v, loaded in self._served.get(name, {}).items()}
            rows.update({v: STATE_LOADING for v in self._loading.get(name, set())})
        if not rows:
            self._raise_missing(name, version)
        if version is not None:
            if version not in rows:
                raise ServingError(f"Could not find version {version} of model {name}", 404)
            return [(version, rows[version])]
        return sorted(rows.items(), reverse=True)

    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> LoadedVersion:
        """The version a request should use, with a reference held; call ``release()`` after.

        Raises:
            ServingError: 404 for an unknown model, version or label; 503 while nothing loaded.
        """
        if label is not None:
            version = self._label_version(name, label)
        with self._lock:
            served = self._served.get(name, {})
            if served:
                chosen = served.get(version) if version is not None else served[max(served)]
                if chosen is not None:
                    return chosen.acquire()
        if not served:
            self._raise_missing(name, version)
        raise ServingError(f"Servable not found for request: Specific({name}, {version})", 404)

    def versions(self, name: str) -> list[LoadedVersion]:
        with self._lock:
            return [
                self._served.get(name, {})[v]
                for v in sorted(self._served.get(name, {}), reverse=True)
            ]

    def labels(self, name: str) -> dict[str, int]:
        return dict(self.policy(name).labels)

    def _label_version(self, name: str, label: str) -> int:
        labels = self.policy(name).labels
        if label not in labels:
            raise ServingError(f"Unrecognized servable version label: {label}", 404)
        return labels[label]

    def _raise_missing(self, name: str, version: int | None) -> None:
        which = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        if not self.has_any():
            raise ServingError(
                f"Servable not found for request: {which}; no model version is loaded yet", 503
            )
        if self.known(name):
            raise ServingError(
                f"Servable not found for request: {which}; model {name} has no loaded version yet",
                503,
            )
        raise ServingError(f"Servable not found for request: {which}", 404)


def _dir_stamp(path: str) -> tuple[float, int]:
    """Newest mtime and total size of a version folder: changes while files are copied in."""
    newest, total = 0.0, 0
    for root, _, files in os.walk(path):
        for entry in files:
            try:
                stat = os.stat(os.path.join(root, entry))
            except OSError:
                continue
            newest, total = max(newest, stat.st_mtime), total + stat.st_size
    return newest, total
