"""Locust users for bench/serve.py: closed-loop clients of the model server and the web app.

Run by bench/serve.py in its own venv (`make locust`: locust's gevent stays out of the
TensorFlow venv), headless and bounded, e.g.

    .venv-locust/bin/locust -f bench/locustfile.py --headless -u 50 -r 50 -t 20s \
        --host http://127.0.0.1:8501 --csv /tmp/x/run ModelServerUser

Each user sends its next request as soon as the previous one is answered (no think
time), as a client that batches nothing would. Environment: BENCH_IMAGE (a PNG/JPEG
file; default a 50x50 noise patch written by bench/serve.py) and BENCH_MODEL (the
served model's name). A 200 whose JSON lacks the answer counts as a failure.
"""

import base64
import os

from locust import FastHttpUser, constant, task

MODEL = os.environ.get("BENCH_MODEL", "breastdx-idc")
IMAGE_PATH = os.environ.get("BENCH_IMAGE", "")
IMAGE = open(IMAGE_PATH, "rb").read() if IMAGE_PATH else b""
BODY = {"instances": [{"b64": base64.b64encode(IMAGE).decode("ascii")}]}
TIMEOUT_S = 60


BOUNDARY = "breastdxbench"
# The web upload's multipart body, built once: the image never changes between requests.
WEB_BODY = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="patch.png"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode()
    + IMAGE
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)


class _ClosedLoopUser(FastHttpUser):
    """No think time, generous timeouts; `post` marks a non-200 (or a 200 without
    ``answer_key`` in its JSON, where one is given) as a failure."""

    abstract = True
    wait_time = constant(0)
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S

    def post(self, path: str, name: str, answer_key: str = "", **kwargs) -> None:
        with self.client.post(path, name=name, catch_response=True, **kwargs) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {(response.text or '')[:100]}")
            elif answer_key and answer_key not in (response.json() or {}):
                response.failure(f"no {answer_key} in the answer")


class ModelServerUser(_ClosedLoopUser):
    """TF Serving's REST ``:predict`` (``serving_default``), one image per request."""

    @task
    def predict(self):
        self.post(f"/v1/models/{MODEL}:predict", ":predict", answer_key="predictions", json=BODY)


class WebUser(_ClosedLoopUser):
    """The web app's JSON upload ``POST /api/predict`` (checks -> model server -> explain)."""

    @task
    def predict(self):
        self.post(
            "/api/predict",
            "/api/predict",
            data=WEB_BODY,
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
