"""Prediction clients: one interface, three back ends, chosen by the web app's config.

``webapp.backends.make_client`` (called by ``webapp.create_app``) picks one; ``webapp.service`` and
``breastdx_cli.predict`` call :meth:`PredictionClient.predict` and ``versions``. Back ends:

* ``rest``: TF Serving's REST API (this project's ``breastdx serve`` or ``tensorflow/serving``)
  with ``requests``; bytes travel as ``{"b64": ...}`` and the server decodes them.
* ``grpc``: TF Serving's ``PredictionService`` (``webapp.grpc_client``, which imports this
  module, never the other way round; ``webapp.backends`` imports it only when chosen:
  ``tensorflow_serving.apis`` protos import TensorFlow).
* ``vertex``: AI Platform / Vertex AI online prediction through google-api-python-client
  (``discovery.build("ml", "v1")``, as the classic ``predict_json``).

Every failure becomes :class:`PredictionError` with a message a person can act on and
the HTTP status the web app should answer with. Nothing here imports TensorFlow or
touches pixels: the images go to the model exactly as uploaded.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from breastdx_core import contract, errors

log = logging.getLogger(__name__)

EXPLAIN_SIGNATURE = contract.SIGNATURE_EXPLAIN
HEATMAP_OUTPUT = contract.OUTPUT_HEATMAP
MODEL_CARD_KEY = "model_card"  # serving.server's extra key in the metadata response
DECISIONS_KEY = "decisions"  # serving.server's extra key in a :predict response
STATE_AVAILABLE = "AVAILABLE"
DEFAULT_TIMEOUT_S = 30.0
POOL_SIZE = 64  # connections kept to the model server; the web app runs many threads
SIGNATURE_MISSING = "not found in signature def"  # TF Serving's words for an unknown signature

HTTP_BAD_REQUEST = 400
HTTP_NOT_FOUND = 404
HTTP_BAD_GATEWAY = 502
HTTP_UNAVAILABLE = 503
HTTP_TIMEOUT = 504


class PredictionError(errors.BreastdxError):
    """A prediction (or a status look-up) that failed, whichever back end was asked.

    Attributes:
        message: what went wrong, naming the server or endpoint.
        status: the HTTP status the web app should answer with (400 the image was refused,
            404 unknown model or version, 502 the back end failed, 503 it is unreachable or
            has no model loaded, 504 it timed out).
    """

    def __init__(self, message: str, status: int = HTTP_BAD_GATEWAY):
        super().__init__(message)
        self.message = message
        self.status = status
        self.http_status = status


@dataclasses.dataclass
class Prediction:
    """One image's answer from the model.

    Attributes:
        class_name: the arg-max class.
        class_index: its index.
        probabilities: one probability per class, in the card's class order.
        positive_probability: P(positive class), what the uncertainty band is applied to.
        model_name: the model that answered.
        model_version: its version (a string, as TF Serving writes it), or None if unknown.
        heatmap: Grad-CAM rows in [0, 1] at the model's input size, or None when the model
            has no ``explain`` signature.
        ood_score: the model's feature-space OOD score, or None when it has none.
        decision: the model server's decision for the image (breastdx_core/decision.py: status,
            class_name, prediction_set, text, reason), or None from a backend without one
            (TF Serving, Vertex AI): the web app then applies the same rule itself.
    """

    class_name: str
    class_index: int
    probabilities: list[float]
    positive_probability: float
    model_name: str
    model_version: str | None
    heatmap: list[list[float]] | None = None
    ood_score: float | None = None
    decision: dict[str, Any] | None = None

    @property
    def probability(self) -> float:
        """The probability of the predicted class."""
        return self.probabilities[self.class_index]


@dataclasses.dataclass
class VersionInfo:
    """A served version, its state and its model card (``{}`` when the server has none)."""

    version: str
    state: str
    card: dict[str, Any]


def prediction_from_row(row: Mapping[str, Any], model_name: str, version: str | None) -> Prediction:
    """A :class:`Prediction` from one row of the signature's outputs.

    Raises:
        PredictionError: when an output is missing (the model breaks the serving contract).
    """
    try:
        heatmap = row.get(HEATMAP_OUTPUT)
        return Prediction(
            class_name=str(row[contract.OUTPUT_CLASS_NAME]),
            class_index=int(row[contract.OUTPUT_CLASS_INDEX]),
            probabilities=[float(p) for p in row[contract.OUTPUT_PROBABILITIES]],
            positive_probability=float(row[contract.OUTPUT_POSITIVE]),
            model_name=model_name,
            model_version=version,
            heatmap=heatmap,
            ood_score=None
            if row.get(contract.OUTPUT_OOD) is None
            else float(row[contract.OUTPUT_OOD]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise PredictionError(
            f"model {model_name} answered without the contract's outputs "
            f"({contract.OUTPUT_CLASS_NAME}, {contract.OUTPUT_PROBABILITIES}...): {err}"
        ) from None


class PredictionClient(abc.ABC):
    """What the web app needs from a model server."""

    model_name: str

    @abc.abstractmethod
    def predict(
        self, images: Sequence[bytes], version: str | None = None, explain: bool = True
    ) -> list[Prediction]:
        """Classifies encoded images (PNG/JPEG bytes, unchanged).

        Args:
            images: the files' bytes.
            version: a served version to use; None for the newest.
            explain: ask for the Grad-CAM heatmap (falls back to no heatmap when the
                model has no ``explain`` signature).

        Returns:
            One :class:`Prediction` per image, in order.

        Raises:
            PredictionError: on any failure.
        """

    @abc.abstractmethod
    def versions(self) -> list[VersionInfo]:
        """The served versions, newest first, with their cards.

        Raises:
            PredictionError: on any failure.
        """


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


class RestClient(PredictionClient):
    """TF Serving's REST API.

    TF Serving's predict response does not say which version answered, so an unpinned
    request first asks for the newest available version and then calls that version's
    URL: the answer and the version shown beside it always agree.

    Args:
        base_url: e.g. ``http://127.0.0.1:8501``.
        model_name: the served model.
        timeout_s: per HTTP call.
        session: a ``requests.Session`` to reuse (tests pass one).
    """

    def __init__(
        self,
        base_url: str,
        model_name: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._session = session or requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._cards: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _url(self, version: str | None = None, suffix: str = "") -> str:
        url = f"{self.base_url}/v1/models/{self.model_name}"
        if version is not None:
            url += f"/versions/{version}"
        return url + suffix

    def _call(self, method: str, url: str, **kwargs) -> Any:
        try:
            response = self._session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.Timeout:
            raise PredictionError(
                f"model server {self.base_url} did not answer within {self.timeout_s:g} s",
                HTTP_TIMEOUT,
            ) from None
        except requests.RequestException as err:
            raise PredictionError(
                f"model server {self.base_url} is unreachable ({type(err).__name__})",
                HTTP_UNAVAILABLE,
            ) from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200:
            detail = payload.get("error") if isinstance(payload, dict) else None
            detail = detail or response.text[:200] or response.reason
            status = (
                response.status_code
                if response.status_code in (HTTP_BAD_REQUEST, HTTP_NOT_FOUND, HTTP_UNAVAILABLE)
                else HTTP_BAD_GATEWAY
            )
            raise PredictionError(f"model server {self.base_url}: {detail}", status)
        if not isinstance(payload, dict):
            raise PredictionError(
                f"model server {self.base_url} answered {url} with something other than JSON"
            )
        return payload

    def status(self) -> list[dict[str, Any]]:
        """TF Serving's ``model_version_status`` rows for the model."""
        return self._call("GET", self._url()).get("model_version_status", [])

    def newest_version(self) -> str:
        """The newest AVAILABLE version; PredictionError 503 when none is."""
        available = [row["version"] for row in self.status() if row.get("state") == STATE_AVAILABLE]
        if not available:
            raise PredictionError(
                f"model {self.model_name} has no available version on {self.base_url}",
                HTTP_UNAVAILABLE,
            )
        return max(available, key=int)

    def card(self, version: str) -> dict[str, Any]:
        """The version's model card from the metadata response (``{}`` from plain TF Serving)."""
        with self._lock:
            if version in self._cards:
                return self._cards[version]
        card = self._call("GET", self._url(version, "/metadata")).get(MODEL_CARD_KEY) or {}
        with self._lock:
            self._cards[version] = card
        return card

    def predict(
        self, images: Sequence[bytes], version: str | None = None, explain: bool = True
    ) -> list[Prediction]:
        pinned = version is not None
        chosen = version if pinned else self.newest_version()
        signature = EXPLAIN_SIGNATURE if explain else contract.SIGNATURE_BYTES
        body = {"signature_name": signature, "instances": [_b64(image) for image in images]}
        try:
            payload = self._call("POST", self._url(chosen, ":predict"), json=body)
        except PredictionError as err:
            if explain and SIGNATURE_MISSING in err.message:
                return self.predict(images, chosen, explain=False)
            if pinned or err.status != HTTP_NOT_FOUND:
                raise
            # The version was swapped out between the two calls: ask again, once.
            chosen = self.newest_version()
            payload = self._call("POST", self._url(chosen, ":predict"), json=body)
        rows = payload.get("predictions")
        if not isinstance(rows, list) or len(rows) != len(images):
            raise PredictionError(
                f"model server {self.base_url} returned {len(rows or [])} predictions "
                f"for {len(images)} images"
            )
        predictions = [prediction_from_row(row, self.model_name, chosen) for row in rows]
        decisions = payload.get(DECISIONS_KEY)
        if isinstance(decisions, list) and len(decisions) == len(predictions):
            for prediction, ruled in zip(predictions, decisions):
                prediction.decision = ruled if isinstance(ruled, dict) else None
        return predictions

    def run_signature(
        self, images: Sequence[bytes], signature: str, version: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Calls any signature that takes ``image_bytes`` (``segment``, ``heatmap``) and returns
        its raw output rows and the version that answered (``webapp.kinds`` reads them)."""
        chosen = version if version is not None else self.newest_version()
        body = {"signature_name": signature, "instances": [_b64(image) for image in images]}
        rows = self._call("POST", self._url(chosen, ":predict"), json=body).get("predictions")
        if not isinstance(rows, list) or len(rows) != len(images):
            raise PredictionError(
                f"model server {self.base_url} returned {len(rows or [])} rows of {signature} "
                f"for {len(images)} images"
            )
        return rows, chosen

    def versions(self) -> list[VersionInfo]:
        rows = sorted(self.status(), key=lambda row: int(row["version"]), reverse=True)
        result = []
        for row in rows:
            card = self.card(row["version"]) if row.get("state") == STATE_AVAILABLE else {}
            result.append(VersionInfo(row["version"], row.get("state", ""), card))
        return result


class VertexClient(PredictionClient):
    """AI Platform (Vertex AI legacy) online prediction, ``ml`` v1 ``projects.predict``.

    Args:
        project: the Google Cloud project id (from config, never from code).
        model: the AI Platform model name.
        version: a version to use by default, or None for the model's default version.
        service: a built discovery service (tests pass a fake); built on first use otherwise.
    """

    def __init__(self, project: str, model: str, version: str | None = None, service: Any = None):
        if not project or not model:
            raise PredictionError(
                "the vertex client needs VERTEX_PROJECT and VERTEX_MODEL in the config",
                HTTP_UNAVAILABLE,
            )
        self.project = project
        self.model_name = model
        self.default_version = version
        self._service = service

    def _api(self):
        if self._service is None:
            try:
                from googleapiclient import discovery

                self._service = discovery.build("ml", "v1", cache_discovery=False)
            except Exception as err:  # missing credentials, no network, missing package
                raise PredictionError(
                    f"cannot reach AI Platform prediction ({type(err).__name__}: {err})",
                    HTTP_UNAVAILABLE,
                ) from None
        return self._service

    def _execute(self, call, what: str) -> dict[str, Any]:
        try:
            response = call.execute()
        except Exception as err:  # googleapiclient.errors.HttpError, auth and transport errors
            status = getattr(getattr(err, "resp", None), "status", None)
            mapped = HTTP_NOT_FOUND if status == HTTP_NOT_FOUND else HTTP_BAD_GATEWAY
            raise PredictionError(
                f"AI Platform {what} failed: {type(err).__name__}: {err}", mapped
            ) from None
        if isinstance(response, dict) and "error" in response:
            raise PredictionError(f"AI Platform {what}: {response['error']}", HTTP_BAD_REQUEST)
        return response

    def predict(
        self, images: Sequence[bytes], version: str | None = None, explain: bool = True
    ) -> list[Prediction]:
        version = version or self.default_version
        name = f"projects/{self.project}/models/{self.model_name}"
        if version:
            name += f"/versions/{version}"
        body = {
            "instances": [{contract.SERVING_INPUT_BYTES: _b64(image)} for image in images],
            "signature_name": EXPLAIN_SIGNATURE if explain else contract.SIGNATURE_BYTES,
        }
        try:
            response = self._execute(
                self._api().projects().predict(name=name, body=body), f"predict on {name}"
            )
        except PredictionError as err:
            if explain and SIGNATURE_MISSING in err.message:
                return self.predict(images, version, explain=False)
            raise
        rows = response.get("predictions")
        if not isinstance(rows, list) or len(rows) != len(images):
            raise PredictionError(
                f"AI Platform {name} returned {len(rows or [])} predictions for {len(images)} images"
            )
        return [prediction_from_row(row, self.model_name, version) for row in rows]

    def versions(self) -> list[VersionInfo]:
        parent = f"projects/{self.project}/models/{self.model_name}"
        response = self._execute(
            self._api().projects().models().versions().list(parent=parent),
            f"versions.list on {parent}",
        )
        rows = [
            VersionInfo(v["name"].rsplit("/", 1)[-1], v.get("state", ""), {})
            for v in response.get("versions", [])
        ]
        return sorted(rows, key=lambda row: row.version, reverse=True)
