"""Which prediction client the web app uses: `make_client(config)`.

``webapp.create_app`` calls it. It lives apart from the clients so that the import
graph has no loop: ``webapp.clients`` (the interface, REST and Vertex AI) and
``webapp.grpc_client`` (TF Serving's gRPC API, which subclasses the interface) are both
below this module, and neither imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webapp.clients import DEFAULT_TIMEOUT_S, PredictionClient, RestClient, VertexClient


def make_client(config: Mapping[str, Any]) -> PredictionClient:
    """The client the config names.

    Args:
        config: the web app's config: ``CLIENT`` (``rest``, ``grpc`` or ``vertex``),
            ``SERVER_URL``, ``GRPC_TARGET``, ``MODEL_NAME``, ``VERTEX_PROJECT``,
            ``VERTEX_MODEL``, ``VERTEX_VERSION``, ``REQUEST_TIMEOUT_S``.

    Raises:
        ValueError: for an unknown ``CLIENT``.
    """
    kind = config.get("CLIENT", "rest")
    timeout = float(config.get("REQUEST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    if kind == "rest":
        return RestClient(config["SERVER_URL"], config["MODEL_NAME"], timeout)
    if kind == "grpc":
        # Imported only when chosen: TF Serving's protos import TensorFlow's package.
        from webapp.grpc_client import GrpcClient

        return GrpcClient(config["GRPC_TARGET"], config["MODEL_NAME"], timeout)
    if kind == "vertex":
        return VertexClient(
            config.get("VERTEX_PROJECT"),
            config.get("VERTEX_MODEL") or config["MODEL_NAME"],
            config.get("VERTEX_VERSION"),
        )
    raise ValueError(f"CLIENT must be one of rest, grpc, vertex; got {kind!r}")
