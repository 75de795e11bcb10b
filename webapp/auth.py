"""Who is asking: sign-in for the web app.

``webapp.create_app`` calls :func:`init_app`, which checks every request (except the
Kubernetes probe ``/healthz``) before a blueprint sees it. Modes, from the ``AUTH`` setting
(``BREASTDX_WEB_AUTH``):

- ``local`` (default): open, but only to this machine (127.0.0.1 / ::1), for ``make web``.
- ``iap``: behind Google Cloud Identity-Aware Proxy. IAP signs every request it lets through
  with a JWT in the ``x-goog-iap-jwt-assertion`` header (ES256, Google's public keys); the
  app verifies signature, expiry, issuer and audience (``IAP_AUDIENCE``:
  ``/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID``) with google-auth, so a
  request that reaches the pod around IAP (another pod, a port-forward) is refused.
- ``open``: no check; only for a throw-away local cluster (deploy/k8s/overlays/local).

A refused request gets 401 (403 for ``local`` from another address), is logged with the
reason, and never reaches a prediction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, abort, g, request

from breastdx_core import errors

log = logging.getLogger(__name__)

MODES = ("local", "iap", "open")
IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
# PEM public keys by key id (google.auth.jwt reads this form); the JWK variant needs PyJWT.
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
CERTS_CACHE_S = 3600  # Google rotates IAP keys rarely; refetch hourly, not per request
LOOPBACK = ("127.0.0.1", "::1")
OPEN_PATHS = ("/healthz",)  # kubelet probes reach the pod directly, without IAP's header
LOCAL_USER = "local"
HTTP_UNAUTHORIZED = 401
HTTP_FORBIDDEN = 403


class AuthConfigError(errors.UserError):
    """The sign-in settings are incomplete; the message names the variable to set."""


class CachedCerts:
    """A google.auth transport request that caches the answer for the IAP keys URL.

    ``google.oauth2.id_token.verify_token`` fetches the keys on every call; this keeps
    one copy per process for :data:`CERTS_CACHE_S`.
    """

    def __init__(self, inner: Callable[..., Any] | None = None, ttl_s: float = CERTS_CACHE_S):
        if inner is None:
            import google.auth.transport.requests  # deferred: only the iap mode needs it

            inner = google.auth.transport.requests.Request()
        self._inner = inner
        self._ttl_s = ttl_s
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        with self._lock:
            hit = self._cache.get(url)
            if hit and time.monotonic() - hit[0] < self._ttl_s:
                return hit[1]
        response = self._inner(url, method=method, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic(), response)
        return response


def verify_iap_assertion(
    token: str, audience: str, certs_request: Callable[..., Any], certs_url: str = IAP_CERTS_URL
) -> dict[str, Any]:
    """The verified claims of an IAP JWT.

    Raises:
        ValueError: bad signature, expired, wrong audience or issuer, malformed.
    """
    from google.oauth2 import id_token  # deferred: google-auth only in iap mode

    try:
        claims = id_token.verify_token(token, certs_request, audience=audience, certs_url=certs_url)
    except Exception as err:  # google-auth raises ValueError, TransportError, MalformedError...
        raise ValueError(f"{type(err).__name__}: {err}") from None
    if claims.get("iss") != IAP_ISSUER:
        raise ValueError(f"issuer {claims.get('iss')!r} is not {IAP_ISSUER}")
    if not claims.get("email") and not claims.get("sub"):
        raise ValueError("the assertion names no user (no email, no sub)")
    return claims


def check_settings(config: dict[str, Any]) -> str:
    """The sign-in mode, after checking that its settings are complete.

    Raises:
        AuthConfigError: unknown mode, or ``iap`` without an audience.
    """
    mode = str(config.get("AUTH") or "local").lower()
    if mode not in MODES:
        raise AuthConfigError(f"BREASTDX_WEB_AUTH must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "iap" and not config.get("IAP_AUDIENCE"):
        raise AuthConfigError(
            "BREASTDX_WEB_AUTH=iap needs BREASTDX_WEB_IAP_AUDIENCE "
            "(/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID; docs/cluster.md)"
        )
    return mode


def current_user() -> str:
    """The signed-in user of this request (an e-mail address behind IAP)."""
    return getattr(g, "user", None) or LOCAL_USER


def init_app(app: Flask) -> None:
    """Checks the settings and installs the per-request check.

    Raises:
        AuthConfigError: see :func:`check_settings` (the app does not start half-protected).
    """
    mode = check_settings(app.config)
    app.config["AUTH"] = mode
    certs = app.config.get("IAP_CERTS_REQUEST") or (CachedCerts() if mode == "iap" else None)
    certs_url = app.config.get("IAP_CERTS_URL") or IAP_CERTS_URL

    @app.before_request
    def sign_in():
        if request.path in OPEN_PATHS:
            return None
        if mode == "open":
            g.user = "anonymous"
            return None
        if mode == "local":
            if request.remote_addr not in LOOPBACK:
                log.warning(
                    "refused %s %s from %s: BREASTDX_WEB_AUTH=local serves this machine only",
                    request.method,
                    request.path,
                    request.remote_addr,
                )
                abort(
                    HTTP_FORBIDDEN,
                    "this app serves only 127.0.0.1 (BREASTDX_WEB_AUTH=local); "
                    "put it behind IAP with BREASTDX_WEB_AUTH=iap",
                )
            g.user = LOCAL_USER
            return None
        token = request.headers.get(IAP_HEADER)
        if not token:
            reason = f"no {IAP_HEADER} header"
        else:
            try:
                claims = verify_iap_assertion(token, app.config["IAP_AUDIENCE"], certs, certs_url)
            except ValueError as err:
                reason = f"invalid IAP assertion ({err})"
            else:
                g.user = claims.get("email") or claims["sub"]
                return None
        log.warning(
            "refused %s %s from %s: %s", request.method, request.path, request.remote_addr, reason
        )
        abort(
            HTTP_UNAUTHORIZED, f"sign-in required: {reason}; open the app through its IAP address"
        )
