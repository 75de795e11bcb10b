"""The model server: TF Serving's REST API over the versions a :class:`ModelStore` serves.

``breastdx serve`` (``serving.cli.run_serve``) runs :func:`create_app` under gunicorn;
tests call :func:`create_app` directly. It is the local stand-in for ``tensorflow/serving``
(the cluster runs the real image on the same folder), so the paths, bodies, status codes
and error shape are TF Serving's:

* ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]``: version status.
* ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``: signature defs, plus the
  model card under the extra key ``model_card`` (TF Serving itself has no such key).
* ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict``: ``instances`` or ``inputs``,
  optional ``signature_name``. TF Serving's keys (``predictions`` / ``outputs``) are as
  TF Serving writes them; for encoded images the extra key ``decisions`` holds, per image,
  the model card's decision (breastdx_core/decision.py: "not assessed" outside the input
  contract or above the OOD threshold, the conformal set, the class), the same that the
  web app and ``breastdx predict`` show.

Errors are ``{"error": "..."}``: 400 for a bad request, 404 for an unknown model, version
or label, 503 while nothing is loaded.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from breastdx_core import contract, decision, errors
from serving import batching, codec
from serving.model_store import (
    DEFAULT_NUM_VERSIONS,
    DEFAULT_POLL_SECONDS,
    LoadedVersion,
    ModelStore,
    ServingError,
)

log = logging.getLogger(__name__)

MODEL_CARD_KEY = "model_card"  # the extra key in the metadata response
DECISIONS_KEY = "decisions"  # the extra key in a :predict response (one per image)
PREDICT_METHOD = "tensorflow/serving/predict"
_MODEL_PATH = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[a-z]+))?$"
)


def _error(message: str, status: int) -> Response:
    return Response(json.dumps({"error": message}), status=status, mimetype="application/json")


def _ok(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), status=200, mimetype="application/json")


def _dtype_name(dtype) -> str:
    from tensorflow.core.framework import types_pb2  # the server process has TF already

    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _tensor_info(spec, tensor_name: str) -> dict[str, Any]:
    shape = spec.shape
    if shape.rank is None:
        tensor_shape = {"dim": [], "unknown_rank": True}
    else:
        tensor_shape = {
            "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in shape.as_list()],
            "unknown_rank": False,
        }
    return {"dtype": _dtype_name(spec.dtype), "tensor_shape": tensor_shape, "name": tensor_name}


def signature_defs(loaded: LoadedVersion) -> dict[str, Any]:
    """The versions' signatures in GetModelMetadata's JSON form."""
    defs = {}
    for sig_name, function in sorted(loaded.signatures.items()):
        inputs = function.structured_input_signature[1]
        outputs = function.structured_outputs
        defs[sig_name] = {
            "inputs": {
                name: _tensor_info(spec, f"{sig_name}_{name}:0")
                for name, spec in sorted(inputs.items())
            },
            "outputs": {
                name: _tensor_info(spec, f"StatefulPartitionedCall:{i}")
                for i, (name, spec) in enumerate(sorted(outputs.items()))
            },
            "method_name": PREDICT_METHOD,
        }
    return defs


def create_app(
    serving_root: str,
    model_names: list[str] | None = None,
    config_path: str | None = None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    num_versions: int = DEFAULT_NUM_VERSIONS,
    enable_batching: bool = True,
    max_batch_size: int = batching.DEFAULT_MAX_BATCH_SIZE,
    batch_timeout_s: float = batching.DEFAULT_TIMEOUT_S,
    start: bool = True,
    batch_threads: int = batching.DEFAULT_THREADS,
) -> Flask:
    """The model server's WSGI app.

    Args:
        serving_root: folder with ``<model_name>/<version>/saved_model.pb``.
        model_names: models to serve; None serves every sub-folder.
        config_path: optional model config (labels, version policy), JSON or TF Serving text format.
        poll_seconds: file-system poll interval.
        num_versions: newest versions kept loaded by the default policy.
        enable_batching: batch concurrent requests (see ``serving.batching``).
        max_batch_size: rows per batched call.
        batch_timeout_s: how long a batch waits to fill.
        start: start the poller thread (tests may call ``store.poll()`` themselves).
        batch_threads: batches that may run at once.

    Returns:
        The Flask app; its ``extensions["model_store"]`` is the :class:`ModelStore`.
    """
    store = ModelStore(serving_root, model_names, config_path, poll_seconds, num_versions)
    batcher = (
        batching.Batcher(max_batch_size, batch_timeout_s, batch_threads)
        if enable_batching
        else None
    )
    app = Flask(__name__)
    app.extensions["model_store"] = store
    app.extensions["batcher"] = batcher

    @app.errorhandler(errors.BreastdxError)
    def user_error(err: errors.BreastdxError) -> Response:
        return _error(getattr(err, "message", None) or str(err), err.http_status)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        return _error(f"{err.name}: {err.description}", err.code or 400)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(f"Internal error: {type(err).__name__}", 500)

    @app.get("/v1/models/<path:rest>")
    def get_model(rest: str) -> Response:
        return _dispatch(store, batcher, rest, "GET")

    @app.post("/v1/models/<path:rest>")
    def post_model(rest: str) -> Response:
        return _dispatch(store, batcher, rest, "POST")

    if start:
        store.start()
    return app


def _dispatch(store: ModelStore, batcher, rest: str, method: str) -> Response:
    match = _MODEL_PATH.match(rest)
    if not match:
        return _error(f"Malformed request: {method} /v1/models/{rest}", 404)
    name, label, verb = match["name"], match["label"], match["verb"]
    version = None
    if match["version"] is not None:
        if not match["version"].isdigit():
            return _error(
                f"Malformed request: version must be an integer, got {match['version']!r}", 400
            )
        version = int(match["version"])
    try:
        if method == "GET" and verb is None and not match["metadata"]:
            rows = store.status(name, version, label)
            return _ok(
                {
                    "model_version_status": [
                        {
                            "version": str(v),
                            "state": state,
                            "status": {"error_code": "OK", "error_message": ""},
                        }
                        for v, state in rows
                    ]
                }
            )
        if method == "GET" and match["metadata"]:
            return _metadata(store, name, version, label)
        if method == "POST" and verb == "predict":
            return _predict(store, batcher, name, version, label)
        if method == "POST" and verb in ("classify", "regress"):
            return _error(f"{verb} is not implemented by this server; use :predict", 501)
    except ServingError as err:
        return _error(err.message, err.status)
    return _error(f"Malformed request: {method} /v1/models/{rest}", 404)


def _metadata(store: ModelStore, name: str, version: int | None, label: str | None) -> Response:
    loaded = store.acquire(name, version, label)
    try:
        return _ok(
            {
                "model_spec": {"name": name, "signature_name": "", "version": str(loaded.version)},
                "metadata": {"signature_def": {"signature_def": signature_defs(loaded)}},
                MODEL_CARD_KEY: loaded.card,
            }
        )
    finally:
        loaded.release()


def _predict(
    store: ModelStore, batcher, name: str, version: int | None, label: str | None
) -> Response:
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        return _error(f"JSON Parse error: {err}", 400)
    if not isinstance(body, dict):
        return _error("JSON Value: the request body must be a JSON object", 400)
    signature_name = body.get("signature_name") or contract.SIGNATURE_BYTES
    if not isinstance(signature_name, str):
        return _error('"signature_name" must be a string', 400)
    loaded = store.acquire(name, version, label)
    try:
        function = loaded.signature(signature_name)
        try:
            inputs, row_format = codec.decode_request(body, function.structured_input_signature[1])
        except codec.RequestError as err:
            return _error(str(err), 400)
        try:
            outputs = (
                batcher.run(function, inputs)
                if batcher
                else batching.call_signature(function, inputs)
            )
        except batching.SignatureCallError as err:
            return _error(err.message, err.status)
        response = codec.encode_response(outputs, row_format)
        decisions = _decisions(loaded, inputs, outputs)
        if decisions is not None:
            response[DECISIONS_KEY] = decisions
        return _ok(response)
    finally:
        loaded.release()


def _decisions(
    loaded: LoadedVersion, inputs: dict[str, Any], outputs: dict[str, Any]
) -> list[dict] | None:
    """The card's decision for each image (breastdx_core/decision.py), where the signature took
    encoded images and returned class probabilities; None otherwise."""
    images = inputs.get(contract.SERVING_INPUT_BYTES)
    probabilities = outputs.get(contract.OUTPUT_PROBABILITIES)
    if images is None or probabilities is None:
        return None
    ood = outputs.get(contract.OUTPUT_OOD)
    return [
        decision.assess(loaded.card, bytes(image), row, None if ood is None else float(ood[i]))
        for i, (image, row) in enumerate(
            zip(np.asarray(images).reshape(-1), np.asarray(probabilities))
        )
    ]
