"""Where MLflow is: the tracking URI (credentials kept out of it) and a pre-flight check
that fails in seconds, before any trial starts. Light: no MLflow import."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from sweeps.settings import DEFAULT_TRACKING_URI, TRACKING_ENV


class TrackingError(RuntimeError):
    """The tracking server cannot be used; raised before any trial starts."""


def public_uri(uri: str) -> str:
    """The tracking URI without credentials, for logs, tags, results and spool files."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri  # as given: urlunsplit would turn sqlite:////abs into sqlite://abs
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host))


def resolve_tracking_uri(flag: str | None) -> str:
    """The tracking URI to use, never with credentials in it.

    ``http://user:password@host`` works, but the URI ends up in pickled Tune state,
    provenance and logs, so credentials in it are moved to MLflow's own
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (this process only) and
    the URI without them is returned. Prefer setting those two (or
    ``MLFLOW_TRACKING_TOKEN``) yourself: a command line is visible to other users.
    """
    uri = flag or os.environ.get(TRACKING_ENV) or DEFAULT_TRACKING_URI
    parts = urlsplit(uri)
    if parts.username or parts.password:
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username or "")
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password or "")
        uri = public_uri(uri)
    return uri


def _auth_headers() -> dict:
    """The same credentials MLflow's client sends, for the pre-flight check."""
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


# What MLflow's client can track to (its store registry): anything else fails deep inside
# MLflow with a traceback ("" is a plain folder path).
TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "")


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """Make sure ``uri`` is a reachable MLflow server (HTTP) or a usable local store."""
    scheme = urlsplit(uri).scheme.split("+")[0].lower()  # postgresql+psycopg2 -> postgresql
    if scheme not in TRACKING_SCHEMES:
        raise TrackingError(
            f"--tracking-uri {uri}: scheme {scheme + '://'!r} is not supported; allowed: "
            "http(s):// of an MLflow server, sqlite:///path, file:///path or a folder, "
            "postgresql:// or mysql:// (MLflow's database stores)"
        )
    if not uri.startswith(("http://", "https://")):
        return  # sqlite:// or file store: MlflowClient creates it
    base = uri.rstrip("/")
    try:
        req = urllib.request.Request(
            f"{base}/api/2.0/mlflow/experiments/search?max_results=1", headers=_auth_headers()
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable or is not an MLflow server "
            f"({exc}); start one (make up) or pass --tracking-uri / set ${TRACKING_ENV}"
        ) from None
    if not isinstance(body, dict) or "experiments" not in body:  # MLflow always lists Default
        raise TrackingError(
            f"{uri} answered, but not as an MLflow tracking server; allowed: the URI of an "
            "MLflow server (mlflow server, make up), a sqlite:/// URI or a folder"
        )
