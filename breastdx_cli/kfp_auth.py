"""How `breastdx pipeline|run` and `tfx … --engine kubeflow` sign in to a Kubeflow
Pipelines API that is not open.

`breastdx_cli.engines.KfpEngine` (both CLIs' engine) calls :func:`credentials` and passes
the result to ``kfp.Client`` (and its reachability probe). Modes (``BREASTDX_KFP_AUTH``, settings in
`breastdx_core/cluster_configs.py`):

- ``none``: no header (a ``kubectl port-forward``, or an endpoint inside the network);
- ``iap``: KFP behind Identity-Aware Proxy. Each request carries
  ``Authorization: Bearer <Google-signed ID token>`` whose audience is the IAP OAuth
  client id (``BREASTDX_KFP_IAP_CLIENT_ID``). google-auth mints it
  (``google.oauth2.id_token.fetch_id_token``) from a service-account key in
  ``GOOGLE_APPLICATION_CREDENTIALS`` or the GCE/GKE metadata server, and a new one is
  fetched shortly before the old one expires;
- ``token``: a bearer token as given (``BREASTDX_KFP_TOKEN``, or the file
  ``BREASTDX_KFP_TOKEN_FILE``): multi-user Kubeflow (a service-account token), or an ID
  token minted elsewhere (GitHub's ``google-github-actions/auth`` with
  ``token_format: id_token``, ``gcloud auth print-identity-token``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from breastdx_core import cluster_configs

REFRESH_MARGIN_S = 300  # fetch a new ID token five minutes before the old one expires


class KfpAuthError(cluster_configs.ClusterConfigError):
    """The sign-in cannot be set up; the message says what to set (the CLI's exit 2)."""


class IapIdToken:
    """ID tokens for an IAP OAuth client, kept until shortly before they expire.

    Also a kfp ``TokenCredentialsBase`` in effect: kfp's API client calls
    :meth:`refresh_api_key_hook` before every request.
    """

    def __init__(self, client_id: str, request: Any | None = None):
        self.client_id = client_id
        self._request = request
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid ID token (fetched again near expiry).

        Raises:
            KfpAuthError: no Google credentials that can mint ID tokens.
        """
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.auth import jwt
        from google.oauth2 import id_token

        with self._lock:
            if self._token is None or time.time() > self._expires - REFRESH_MARGIN_S:
                request = self._request or google.auth.transport.requests.Request()
                try:
                    token = id_token.fetch_id_token(request, self.client_id)
                except google.auth.exceptions.GoogleAuthError as err:
                    raise KfpAuthError(
                        f"BREASTDX_KFP_AUTH=iap: no ID token for audience {self.client_id} ({err}); set "
                        "GOOGLE_APPLICATION_CREDENTIALS to a service-account key, run where the metadata server "
                        "answers, or use BREASTDX_KFP_AUTH=token with BREASTDX_KFP_TOKEN=$(gcloud auth "
                        f"print-identity-token --audiences={self.client_id})"
                    ) from None
                claims = jwt.decode(
                    token, verify=False
                )  # IAP verifies it; here only its expiry matters
                self._token, self._expires = token, float(claims.get("exp", 0))
            return self._token

    def refresh_api_key_hook(self, config: Any) -> None:
        config.api_key["authorization"] = self.token()
        config.api_key_prefix["authorization"] = "Bearer"


@dataclasses.dataclass
class Credentials:
    """What a KFP client sends: ``client_kwargs`` for ``kfp.Client``; ``header()`` for
    the plain-HTTP probe."""

    mode: str
    client_kwargs: dict[str, Any]
    iap: IapIdToken | None = None
    token: str = ""

    def header(self) -> dict[str, str]:
        if self.iap is not None:
            return {"Authorization": f"Bearer {self.iap.token()}"}
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        return {}


def credentials(cluster: cluster_configs.ClusterConfig) -> Credentials:
    """The sign-in for ``cluster.kfp_auth``.

    Raises:
        cluster_configs.ClusterConfigError: a setting the mode needs is not set.
        KfpAuthError: the token file cannot be read, or no ID token can be minted.
    """
    if cluster.kfp_auth == "iap":
        cluster.require("kfp_iap_client_id")
        iap = IapIdToken(cluster.kfp_iap_client_id)
        iap.token()  # fail here, in one line, rather than inside kfp's first request
        return Credentials("iap", {"credentials": _as_kfp_credentials(iap)}, iap=iap)
    if cluster.kfp_auth == "token":
        token = cluster.kfp_token
        if not token and cluster.kfp_token_file:
            try:
                with open(cluster.kfp_token_file) as f:
                    token = f.read().strip()
            except OSError as err:
                raise KfpAuthError(
                    f"BREASTDX_KFP_TOKEN_FILE {cluster.kfp_token_file}: {err.strerror}"
                ) from None
        if not token:
            raise cluster_configs.ClusterConfigError(
                "BREASTDX_KFP_AUTH=token needs the token: set BREASTDX_KFP_TOKEN or BREASTDX_KFP_TOKEN_FILE "
                "(or --token-file)"
            )
        return Credentials("token", {"existing_token": token}, token=token)
    return Credentials("none", {})


def _as_kfp_credentials(iap: IapIdToken):
    """The token source as kfp's own credentials type (its API client calls the hook)."""
    from kfp.client.token_credentials_base import TokenCredentialsBase

    class _Iap(TokenCredentialsBase):
        def refresh_api_key_hook(self, config):
            iap.refresh_api_key_hook(config)

    return _Iap()
