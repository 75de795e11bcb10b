"""The prediction clients (webapp.clients, webapp.grpc_client): one interface, errors mapped to
PredictionError, requests shaped as each back end expects."""

import base64
from concurrent import futures

import numpy as np
import pytest

from breastdx_core import contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import CLASS_NAMES, MODEL_NAME, RED, free_port, png_bytes  # noqa: E402

ROW = {
    contract.OUTPUT_CLASS_NAME: CLASS_NAMES[1],
    contract.OUTPUT_CLASS_INDEX: 1,
    contract.OUTPUT_PROBABILITIES: [0.2, 0.8],
    contract.OUTPUT_POSITIVE: 0.8,
}


def test_rest_client_against_the_model_server(live_model_server):
    from webapp.clients import RestClient

    client = RestClient(live_model_server.url, MODEL_NAME)
    [prediction] = client.predict([png_bytes(RED)])
    assert (prediction.class_name, prediction.model_version) == (CLASS_NAMES[1], "1")
    assert prediction.heatmap is not None and prediction.probability == pytest.approx(
        max(prediction.probabilities)
    )
    [plain] = client.predict([png_bytes(RED)], explain=False)
    assert plain.heatmap is None
    [version] = client.versions()
    assert version.version == "1" and version.card["model_name"] == MODEL_NAME


@pytest.mark.parametrize("model, status", [("nope", 404)])
def test_rest_client_maps_server_errors(live_model_server, model, status):
    from webapp.clients import PredictionError, RestClient

    with pytest.raises(PredictionError) as caught:
        RestClient(live_model_server.url, model).predict([png_bytes(RED)])
    assert caught.value.status == status and "Servable not found" in caught.value.message
    with pytest.raises(PredictionError) as caught:
        RestClient(live_model_server.url, MODEL_NAME).predict([b"not an image"])
    assert caught.value.status == 400


def test_rest_client_unreachable_server():
    from webapp.clients import PredictionError, RestClient

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PredictionError, match="unreachable") as caught:
        RestClient(url, MODEL_NAME, timeout_s=2).predict([png_bytes(RED)])
    assert caught.value.status == 503 and url in caught.value.message


class FakeCall:
    def __init__(self, result):
        self.result = result

    def execute(self):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class FakeMl:
    """The slice of ``discovery.build('ml', 'v1')`` the Vertex client uses."""

    def __init__(self, predict_result):
        self.predict_result = predict_result
        self.calls = []

    def projects(self):
        return self

    def models(self):
        return self

    def versions(self):
        return self

    def predict(self, name, body):
        self.calls.append((name, body))
        return FakeCall(self.predict_result)

    def list(self, parent):
        self.calls.append((parent, None))
        return FakeCall(
            {
                "versions": [
                    {"name": f"{parent}/versions/v1", "state": "READY"},
                    {"name": f"{parent}/versions/v2", "state": "READY"},
                ]
            }
        )


def test_vertex_client_builds_predict_json_requests():
    from webapp.clients import VertexClient

    service = FakeMl({"predictions": [dict(ROW, heatmap=[[0.5]])]})
    client = VertexClient("my-project", "breastdx", service=service)
    [prediction] = client.predict([png_bytes(RED)], version="v2")
    name, body = service.calls[0]
    assert name == "projects/my-project/models/breastdx/versions/v2"
    assert base64.b64decode(body["instances"][0][contract.SERVING_INPUT_BYTES]["b64"]) == png_bytes(
        RED
    )
    assert body["signature_name"] == "explain"
    assert (prediction.class_name, prediction.model_version, prediction.heatmap) == (
        CLASS_NAMES[1],
        "v2",
        [[0.5]],
    )
    assert [v.version for v in client.versions()] == ["v2", "v1"]


@pytest.mark.parametrize(
    "result, status",
    [
        ({"error": "Prediction failed: bad image"}, 400),
        (RuntimeError("HttpError 403 permission denied"), 502),
        ({"predictions": []}, 502),
    ],
)
def test_vertex_client_errors_become_prediction_errors(result, status):
    from webapp.clients import PredictionError, VertexClient

    with pytest.raises(PredictionError) as caught:
        VertexClient("p", "m", service=FakeMl(result)).predict([png_bytes(RED)])
    assert caught.value.status == status


def test_make_client_refuses_an_unknown_kind():
    from webapp.backends import make_client

    with pytest.raises(ValueError, match="rest, grpc, vertex"):
        make_client({"CLIENT": "carrier-pigeon", "MODEL_NAME": "m"})


def test_grpc_client_against_a_fake_prediction_service():
    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from webapp.backends import make_client
    from webapp.clients import PredictionError

    seen = []

    def tensor(array, dtype):
        proto = tensor_pb2.TensorProto(
            dtype=dtype,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape]
            ),
        )
        if dtype == types_pb2.DT_STRING:
            proto.string_val.extend(array.tolist())
        else:
            proto.tensor_content = array.tobytes()
        return proto

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            seen.append(request)
            if request.model_spec.name != MODEL_NAME:
                context.abort(
                    grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(x)"
                )
            count = request.inputs[contract.SERVING_INPUT_BYTES].tensor_shape.dim[0].size
            response = predict_pb2.PredictResponse()
            response.model_spec.name = MODEL_NAME
            response.model_spec.version.value = 4
            outputs = {
                contract.OUTPUT_PROBABILITIES: tensor(
                    np.tile(np.float32([0.3, 0.7]), (count, 1)), types_pb2.DT_FLOAT
                ),
                contract.OUTPUT_CLASS_NAME: tensor(
                    np.array([CLASS_NAMES[1].encode()] * count), types_pb2.DT_STRING
                ),
                contract.OUTPUT_CLASS_INDEX: tensor(np.ones(count, np.int64), types_pb2.DT_INT64),
                contract.OUTPUT_POSITIVE: tensor(
                    np.full(count, 0.7, np.float32), types_pb2.DT_FLOAT
                ),
                "heatmap": tensor(np.zeros((count, 2, 2), np.float32), types_pb2.DT_FLOAT),
            }
            for key, proto in outputs.items():
                response.outputs[key].CopyFrom(proto)
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = make_client(
            {"CLIENT": "grpc", "GRPC_TARGET": f"127.0.0.1:{port}", "MODEL_NAME": MODEL_NAME}
        )
        first, second = client.predict([png_bytes(RED), png_bytes(RED)], version="4")
        request = seen[0]
        assert (
            request.model_spec.signature_name == "explain" and request.model_spec.version.value == 4
        )
        assert list(request.inputs[contract.SERVING_INPUT_BYTES].string_val) == [png_bytes(RED)] * 2
        assert (first.class_name, first.model_version, first.heatmap) == (
            CLASS_NAMES[1],
            "4",
            [[0.0, 0.0]] * 2,
        )
        assert second.probabilities == pytest.approx([0.3, 0.7])
        wrong = make_client(
            {"CLIENT": "grpc", "GRPC_TARGET": f"127.0.0.1:{port}", "MODEL_NAME": "other"}
        )
        with pytest.raises(PredictionError) as caught:
            wrong.predict([png_bytes(RED)])
        assert caught.value.status == 404 and "Servable not found" in caught.value.message
    finally:
        server.stop(0)
