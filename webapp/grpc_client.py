"""TF Serving's gRPC ``PredictionService`` as a :class:`webapp.clients.PredictionClient`.

``webapp.backends.make_client`` imports this module only when the config says
``CLIENT = "grpc"``: ``tensorflow_serving.apis`` protos import ``tensorflow.core.framework``,
which runs TensorFlow's package import. The request is still built by hand from the
protos (no ``tf.make_tensor_proto``) and the response read with numpy, so no TensorFlow
op runs in the web process and no image is decoded or resized here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from breastdx_core import contract
from webapp.clients import (
    EXPLAIN_SIGNATURE,
    HTTP_BAD_GATEWAY,
    HTTP_BAD_REQUEST,
    HTTP_NOT_FOUND,
    HTTP_TIMEOUT,
    HTTP_UNAVAILABLE,
    SIGNATURE_MISSING,
    Prediction,
    PredictionClient,
    PredictionError,
    VersionInfo,
    prediction_from_row,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a batch of images plus 64x64 heatmaps fits easily
_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTP_BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTP_NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: HTTP_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTP_TIMEOUT,
}
_NUMPY = {
    types_pb2.DT_FLOAT: (np.float32, "float_val"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"),
    types_pb2.DT_INT64: (np.int64, "int64_val"),
}


def string_tensor(values: Sequence[bytes]) -> tensor_pb2.TensorProto:
    """A ``[len(values)]`` DT_STRING TensorProto."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
        string_val=list(values),
    )


def tensor_to_list(proto: tensor_pb2.TensorProto) -> Any:
    """A TensorProto's value as nested lists (strings decoded as UTF-8)."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.array(
            [value.decode("utf-8", "replace") for value in proto.string_val], dtype=object
        )
    elif proto.dtype in _NUMPY:
        dtype, field = _NUMPY[proto.dtype]
        if proto.tensor_content:
            flat = np.frombuffer(proto.tensor_content, dtype=dtype)
        else:
            flat = np.array(getattr(proto, field), dtype=dtype)
    else:
        raise PredictionError(
            f"unsupported output dtype {types_pb2.DataType.Name(proto.dtype)}", HTTP_BAD_GATEWAY
        )
    size = int(np.prod(shape)) if shape else 1
    if flat.size == 1 and size > 1:  # TF Serving may send one value for a constant tensor
        flat = np.repeat(flat, size)
    return flat.reshape(shape).tolist()


class GrpcClient(PredictionClient):
    """TF Serving's gRPC API (port 8500 by default).

    Args:
        target: ``host:port``.
        model_name: the served model.
        timeout_s: per call.
    """

    def __init__(self, target: str, model_name: str, timeout_s: float):
        self.target = target
        self.model_name = model_name
        self.timeout_s = timeout_s
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _error(self, err: grpc.RpcError) -> PredictionError:
        code = err.code() if hasattr(err, "code") else None
        detail = err.details() if hasattr(err, "details") else str(err)
        return PredictionError(
            f"model server {self.target} (gRPC {getattr(code, 'name', code)}): {detail}",
            _STATUS.get(code, HTTP_BAD_GATEWAY),
        )

    def predict(
        self, images: Sequence[bytes], version: str | None = None, explain: bool = True
    ) -> list[Prediction]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = (
            EXPLAIN_SIGNATURE if explain else contract.SIGNATURE_BYTES
        )
        if version is not None:
            request.model_spec.version.value = int(version)
        request.inputs[contract.SERVING_INPUT_BYTES].CopyFrom(string_tensor(list(images)))
        try:
            response = self._predict.Predict(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            error = self._error(err)
            if explain and SIGNATURE_MISSING in error.message:
                return self.predict(images, version, explain=False)
            raise error from None
        columns: dict[str, Any] = {
            name: tensor_to_list(proto) for name, proto in response.outputs.items()
        }
        answered = (
            str(response.model_spec.version.value)
            if response.model_spec.HasField("version")
            else version
        )
        count = len(columns.get(contract.OUTPUT_CLASS_NAME, []))
        if count != len(images):
            raise PredictionError(
                f"model server {self.target} returned {count} predictions for {len(images)} images"
            )
        return [
            prediction_from_row(
                {name: column[i] for name, column in columns.items()}, self.model_name, answered
            )
            for i in range(count)
        ]

    def versions(self) -> list[VersionInfo]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        try:
            response = self._models.GetModelStatus(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise self._error(err) from None
        states = get_model_status_pb2.ModelVersionStatus.State
        rows = [
            VersionInfo(str(row.version), states.Name(row.state), {})
            for row in response.model_version_status
        ]
        return sorted(rows, key=lambda row: int(row.version), reverse=True)
