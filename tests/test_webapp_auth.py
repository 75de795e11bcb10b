"""webapp/auth.py and webapp/audit.py through the Flask test client: IAP sign-in (tokens
signed here with a test ES256 key, keys served by a local HTTP server the app fetches
with google-auth), the local mode, one audit line per prediction, and uploads that
never touch the disk. The model is a stub client (the model server is tested elsewhere)."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import flask
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.auth import crypt, jwt
from PIL import Image

from breastdx_core import contract
from webapp import auth
from webapp.clients import Prediction

AUDIENCE = "/projects/123456789/global/backendServices/987654321"
KID = "test-key-1"
USER = "radiologist@example.org"


def _key():
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return crypt.ES256Signer.from_string(pem, key_id=KID), public.decode()


SIGNER, PUBLIC_PEM = _key()
OTHER_SIGNER, _ = _key()


def token(signer=SIGNER, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": auth.IAP_ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "sub": "accounts.google.com:1234",
        "email": USER,
        **claims,
    }
    return jwt.encode(signer, payload).decode()


@pytest.fixture(scope="module")
def certs_url():
    """Serves {kid: PEM public key}, the form of https://www.gstatic.com/iap/verify/public_key."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            body = json.dumps({KID: PUBLIC_PEM}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/iap/verify/public_key", hits
    server.shutdown()
    server.server_close()


class StubModel:
    """A prediction client that answers every image as class 1 with p=0.9 and counts calls."""

    model_name = "breastdx-idc"

    def __init__(self):
        self.calls = 0

    def predict(self, images, version=None, explain=False):
        self.calls += 1
        return [Prediction("idc", 1, [0.1, 0.9], 0.9, self.model_name, "3") for _ in images]

    def versions(self):
        return []


def png(side=50, noise=False) -> bytes:
    buffer = io.BytesIO()
    if noise:
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    else:
        Image.new("RGB", (side, side), (200, 80, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_app(tmp_path, **config):
    settings = {
        "TESTING": True,
        "WTF_CSRF_ENABLED": False,
        "SECRET_KEY": "test",
        "PREDICTION_CLIENT": StubModel(),
        "AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    settings.update(config)
    return flask_app_from(settings)


def flask_app_from(settings):
    from webapp import create_app

    return create_app(settings)


def post(client, images, path="/api/predict", headers=None, remote="127.0.0.1"):
    data = {"file": [(io.BytesIO(b), f"img{i}.png") for i, b in enumerate(images)]}
    return client.post(
        path,
        data=data,
        content_type="multipart/form-data",
        headers=headers or {},
        environ_base={"REMOTE_ADDR": remote},
    )


def audit_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def iap_app(tmp_path, certs_url):
    return make_app(tmp_path, AUTH="iap", IAP_AUDIENCE=AUDIENCE, IAP_CERTS_URL=certs_url[0])


def test_iap_without_the_header_is_refused_logged_and_never_predicts(iap_app, caplog):
    with caplog.at_level(logging.WARNING, logger="webapp.auth"):
        response = post(iap_app.test_client(), [png()])
    assert response.status_code == 401
    assert (
        "sign-in required" in response.json["error"] and auth.IAP_HEADER in response.json["error"]
    )
    assert any("refused POST /api/predict" in r.getMessage() for r in caplog.records)
    assert iap_app.extensions["prediction_client"].calls == 0
    page = iap_app.test_client().get("/", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert page.status_code == 401  # the HTML pages too, not only the API


@pytest.mark.parametrize(
    "bad, reason",
    [
        (lambda: token(aud="/projects/1/global/backendServices/2"), "audience"),
        (lambda: token(exp=int(time.time()) - 120, iat=int(time.time()) - 900), "expired"),
        (lambda: token(signer=OTHER_SIGNER), "signature"),
        (lambda: token(iss="https://accounts.google.com"), "issuer"),
        (lambda: "not.a.jwt", "malformed"),
    ],
)
def test_iap_refuses_a_bad_assertion(iap_app, bad, reason, tmp_path):
    response = post(iap_app.test_client(), [png()], headers={auth.IAP_HEADER: bad()})
    assert response.status_code == 401, reason
    assert "invalid IAP assertion" in response.json["error"]
    assert iap_app.extensions["prediction_client"].calls == 0
    assert audit_lines(tmp_path) == []


def test_iap_signed_user_predicts_and_is_audited(iap_app, tmp_path, certs_url):
    client = iap_app.test_client()
    images = [png(), png(side=40)]
    before = len(certs_url[1])
    response = post(client, images, headers={auth.IAP_HEADER: token()})
    assert response.status_code == 200, response.json
    assert post(client, images[:1], headers={auth.IAP_HEADER: token()}).status_code == 200
    assert len(certs_url[1]) - before == 1  # keys fetched once, then cached
    lines = audit_lines(tmp_path)
    assert len(lines) == 3  # one per image of every answered request
    first = lines[0]
    assert set(first) == {
        "time",
        "event",
        "user",
        "route",
        "model",
        "version",
        "class",
        "probability",
        "image_sha256",
    }
    assert (first["user"], first["route"], first["model"], first["version"]) == (
        USER,
        "api",
        "breastdx-idc",
        "3",
    )
    assert first["probability"] == pytest.approx(0.9)
    assert [line["image_sha256"] for line in lines[:2]] == [
        hashlib.sha256(b).hexdigest() for b in images
    ]
    text = (tmp_path / "audit.jsonl").read_text()
    import base64

    assert base64.b64encode(images[0])[:40].decode() not in text  # never the image


def test_probes_stay_open_behind_iap(iap_app):
    assert (
        iap_app.test_client().get("/healthz", environ_base={"REMOTE_ADDR": "10.4.0.7"}).status_code
        == 200
    )


def test_iap_without_audience_does_not_start(tmp_path):
    with pytest.raises(auth.AuthConfigError, match="BREASTDX_WEB_IAP_AUDIENCE"):
        make_app(tmp_path, AUTH="iap")
    with pytest.raises(auth.AuthConfigError, match="BREASTDX_WEB_AUTH must be one of"):
        make_app(tmp_path, AUTH="password")


def test_settings_come_from_the_environment(tmp_path, monkeypatch, certs_url):
    monkeypatch.setenv("BREASTDX_WEB_AUTH", "iap")
    monkeypatch.setenv("BREASTDX_WEB_IAP_AUDIENCE", AUDIENCE)
    app = make_app(tmp_path, IAP_CERTS_URL=certs_url[0])
    assert app.config["AUTH"] == "iap" and app.config["IAP_AUDIENCE"] == AUDIENCE
    assert post(app.test_client(), [png()]).status_code == 401


def test_local_mode_serves_this_machine_only(tmp_path):
    app = make_app(tmp_path)  # default: BREASTDX_WEB_AUTH=local
    client = app.test_client()
    assert post(client, [png()], remote="10.4.0.7").status_code == 403
    assert app.extensions["prediction_client"].calls == 0
    response = post(client, [png()], path="/")
    assert response.status_code == 200 and contract.RESEARCH_ONLY in response.get_data(as_text=True)
    (line,) = audit_lines(tmp_path)
    assert (line["user"], line["route"]) == (auth.LOCAL_USER, "ui")


def _disk_writes(monkeypatch):
    """Records every temporary file and every file opened for writing."""
    writes = []
    real_open = builtins.open

    def spy_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            writes.append(("open", str(file)))
        return real_open(file, mode, *args, **kwargs)

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        real = getattr(tempfile, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            writes.append((_name, ""))
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, spy)
    monkeypatch.setattr(builtins, "open", spy_open)
    return writes


def test_uploads_are_never_written_to_disk(tmp_path, monkeypatch):
    big = png(side=600, noise=True)
    assert len(big) > 500 * 1024  # above Werkzeug's in-memory limit for a multipart file
    app = make_app(tmp_path, AUDIT_LOG="-")
    writes = _disk_writes(monkeypatch)
    response = post(app.test_client(), [big])
    assert response.status_code == 200, response.json
    assert writes == []
    # the spy sees Werkzeug's default, which spools such a file to a temporary file
    app.request_class = flask.Request
    response = post(app.test_client(), [big])
    assert response.status_code == 200 and ("TemporaryFile", "") in writes
