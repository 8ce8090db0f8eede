"""The compose file's security properties (no Docker engine here, so it is checked as data):
published ports on 127.0.0.1 only, PostgreSQL not published, Ray token auth on every node,
no secret written into the file."""

from __future__ import annotations

import re

import yaml
from conftest import REPO

COMPOSE = REPO / "docker" / "compose.yaml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def host_ip(port) -> str | None:
    if isinstance(port, dict):  # long syntax
        return port.get("host_ip")
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else None  # "HOST:PUBLISHED:TARGET"


def test_every_published_port_is_on_loopback():
    published = {name: s.get("ports", []) for name, s in services().items()}
    assert published["ray-head"] and published["mlflow"]
    for name, ports in published.items():
        for port in ports:
            assert host_ip(port) == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    assert not published["postgres"], "PostgreSQL is for the compose network only"


def test_ray_token_auth_on_every_node_and_no_secret_in_the_file():
    for name in ("ray-head", "ray-worker"):
        s = services()[name]
        assert s["environment"]["RAY_AUTH_MODE"] == "token"
        assert "ray_auth_token" in s["secrets"]
    text = COMPOSE.read_text()
    for key in re.findall(r"POSTGRES_PASSWORD: (.+)", text):
        assert key.startswith("${POSTGRES_PASSWORD:?"), "the password must come from the env"
    assert "docker/ray_auth_token" in (REPO / ".gitignore").read_text()


def test_nodes_share_the_tune_storage_path():
    for name in ("ray-head", "ray-worker"):
        s = services()[name]
        assert s["environment"]["CNNSWEEP_STORAGE_PATH"] == "/data/ray_results"
        assert "ray_results:/data/ray_results" in s["volumes"]
