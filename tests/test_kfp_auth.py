"""`breastdx pipeline|run` sign in to a KFP API (breastdx_cli/kfp_auth.py), against the fake
KFP 2 API stand-in (tests/kfp_standin.py) made to refuse requests without the right
``Authorization`` header.

IAP: the real google-auth path mints the ID token -- a service-account key file (made
here) whose ``token_uri`` is a local token endpoint that checks the signed JWT-bearer
assertion (audience = the IAP client id) and answers an ID token, as Google's does.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from test_kfp_cli import API, FakeKfp, clean_env, cli  # noqa: F401  (clean_env: autouse fixture)

CLIENT_ID = "123456789012-abcdefghijklmnop.apps.googleusercontent.com"
SA_EMAIL = "breastdx-ci@example-project.iam.gserviceaccount.com"


def serve(handler_class):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def guarded():
    servers = []

    def make(expected: str) -> FakeKfp:
        fake = FakeKfp(token=expected)  # behind a proxy that wants Authorization: Bearer <expected>
        server, fake.endpoint = fake.serve()
        servers.append(server)
        return fake

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def google_token_endpoint(tmp_path, monkeypatch):
    """A service-account key file pointing google-auth at a local token endpoint.

    Returns (state): ``state["assertions"]`` the verified assertion claims,
    ``state["id_token"]`` the ID token it answers.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    issuer_signer = crypt.RSASigner.from_string(pem, key_id="google-test")
    now = int(time.time())
    state = {
        "assertions": [],
        "id_token": jwt.encode(
            issuer_signer,
            {
                "iss": "https://accounts.google.com",
                "aud": CLIENT_ID,
                "email": SA_EMAIL,
                "sub": "1",
                "iat": now,
                "exp": now + 3600,
            },
        ).decode(),
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            form = urllib.parse.parse_qs(
                self.rfile.read(int(self.headers["Content-Length"])).decode()
            )
            # what Google checks: a JWT-bearer grant signed by the service account's key
            claims = jwt.decode(
                form["assertion"][0], certs={"k": public}, audience=None, verify=True
            )
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            state["assertions"].append(claims)
            body = json.dumps({"id_token": state["id_token"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server, url = serve(Handler)
    key_file = tmp_path / "sa.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "example-project",
                "private_key_id": "k",
                "private_key": pem,
                "client_email": SA_EMAIL,
                "client_id": "1",
                "token_uri": f"{url}/token",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    yield state
    server.shutdown()
    server.server_close()


def test_iap_sends_a_google_id_token_for_the_client_id(guarded, google_token_endpoint, capsys):
    fake = guarded(google_token_endpoint["id_token"])
    code = cli(
        [
            "pipeline",
            "list",
            "--endpoint",
            fake.endpoint,
            "--auth",
            "iap",
            "--iap-client-id",
            CLIENT_ID,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert {r["path"] for r in fake.requests} >= {f"{API}/healthz", f"{API}/pipelines"}
    assert {r["authorization"] for r in fake.requests} == {
        f"Bearer {google_token_endpoint['id_token']}"
    }
    (assertion,) = google_token_endpoint["assertions"]  # one token, reused until it nears expiry
    assert assertion["target_audience"] == CLIENT_ID and assertion["iss"] == SA_EMAIL


def test_iap_settings_from_the_environment(guarded, google_token_endpoint, monkeypatch):
    fake = guarded(google_token_endpoint["id_token"])
    monkeypatch.setenv("BREASTDX_KFP_AUTH", "iap")
    monkeypatch.setenv("BREASTDX_KFP_IAP_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("BREASTDX_KFP_ENDPOINT", fake.endpoint)
    assert cli(["run", "list"]) == 0
    assert fake.requests[-1]["path"] == f"{API}/runs"


def test_bearer_token_from_the_environment_or_a_file(guarded, tmp_path, monkeypatch, capsys):
    fake = guarded("multi-user-token")
    monkeypatch.setenv("BREASTDX_KFP_TOKEN", "multi-user-token")
    assert cli(["pipeline", "list", "--endpoint", fake.endpoint, "--auth", "token"]) == 0
    monkeypatch.delenv("BREASTDX_KFP_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("multi-user-token\n")
    assert (
        cli(
            [
                "run",
                "list",
                "--endpoint",
                fake.endpoint,
                "--auth",
                "token",
                "--token-file",
                str(token_file),
            ]
        )
        == 0
    )
    assert {r["authorization"] for r in fake.requests} == {"Bearer multi-user-token"}


def test_no_sign_in_is_refused_in_one_line(guarded, capsys):
    fake = guarded("multi-user-token")
    assert cli(["pipeline", "list", "--endpoint", fake.endpoint]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refused the request (401)" in err and "--auth iap" in err


@pytest.mark.parametrize(
    "argv, env, expected",
    [
        (["--auth", "iap"], {}, "BREASTDX_KFP_IAP_CLIENT_ID"),
        (["--auth", "token"], {}, "BREASTDX_KFP_TOKEN"),
        (
            ["--auth", "token", "--token-file", "/nonexistent/token"],
            {},
            "BREASTDX_KFP_TOKEN_FILE /nonexistent/token",
        ),
        (
            ["--auth", "iap", "--iap-client-id", CLIENT_ID],
            {
                "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/sa.json",
                "GCE_METADATA_IP": "127.0.0.1:9",
            },
            "BREASTDX_KFP_AUTH=iap: no ID token",
        ),
    ],
)
def test_incomplete_sign_in_exits_2_naming_the_setting(
    guarded, monkeypatch, capsys, argv, env, expected
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fake = guarded("x")
    assert cli(["pipeline", "list", "--endpoint", fake.endpoint, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert fake.requests == []  # nothing was sent without the sign-in
