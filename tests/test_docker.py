"""docker/ without a Docker engine: the Dockerfiles and the entrypoint linted (hadolint,
shellcheck), the two images checked to install the project the same way, the KubeRay
RayJob (and its optuna-dashboard) checked as data and its pod templates against
Kubernetes' schema, and the containers' start-up script (docker/entrypoint.sh) run outside
Docker: the ``mlflow`` and ``optuna-dashboard`` roles on SQLite (and the latter on a real
PostgreSQL) and the ``ray-head`` role, each on free loopback ports, answering, then stopped
(only the processes this test started)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import REPO, free_port, stop_ray_cluster, terminate_all

DOCKER = REPO / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}
RAYJOB = DOCKER / "kuberay" / "rayjob.yaml"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A linter installed with the dev dependencies (next to this Python, or on PATH)."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not found:
        msg = f"{name} is not installed (pip install -e '.[dev]')"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    return str(found)


def module(name: str):
    """A checker installed with the dev dependencies."""
    try:
        return importlib.import_module(name)
    except ImportError:
        msg = f"{name} is not installed (pip install -e '.[dev]')"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)


def entrypoint_roles() -> set[str]:
    """The roles the entrypoint's top-level ``case`` handles."""
    text = ENTRYPOINT.read_text()
    top = text[text.index("case $role in") : text.index("\nesac")]
    return set(re.findall(r"^  ([a-z-]+)\)", top, re.M))


# ----------------------------------------------------------------------------- linters


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_is_hadolint_clean(flavour):
    out = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILES[flavour])], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # every rule switched off says why, on the comment lines just above it
    lines = DOCKERFILES[flavour].read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 20, line


def test_entrypoint_is_shellcheck_clean():
    out = subprocess.run([tool("shellcheck"), str(ENTRYPOINT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert os.access(ENTRYPOINT, os.X_OK)


# -------------------------------------------------------------------------- the images


def test_images_install_the_project_the_same_way():
    """Both images: one pip command with pyproject.toml's pins (nothing re-pinned), a
    non-root numeric user, the entrypoint, a health check, no secret baked in."""
    texts = {k: p.read_text() for k, p in DOCKERFILES.items()}
    tails = {
        k: t[re.search(r"^RUN python3\.11 -m venv", t, re.M).start() :] for k, t in texts.items()
    }
    assert tails["cpu"] == tails["gpu"], "the images differ after the Python install"

    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[=<>~ ]", p)[0].lower() for p in pins}
    for flavour, text in texts.items():
        pip = [ln for ln in text.splitlines() if re.match(r"RUN .*pip install", ln)]
        assert len(pip) == 1, f"{flavour}: one pip command, so the resolver sees every pin"
        args = pip[0].split("pip install", 1)[1].split()
        assert "-e" in args and "." in args, pip[0]
        extra = [a for a in args if not a.startswith("-") and a != "."]
        assert all(re.fullmatch(r"[\w.-]+==[\w.]+", a) for a in extra), f"unpinned: {extra}"
        assert not {re.split("==", a)[0].lower() for a in extra} & names, "re-pins the project"
        assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", text, re.M), "a numeric non-root user"
        assert 'ENTRYPOINT ["cnnsweep-entrypoint"]' in text
        assert 'CMD ["cnnsweep-entrypoint", "health"]' in text
        for line in text.splitlines():
            if line.startswith(("ENV", "ARG")):
                assert not re.search(r"PASSWORD|TOKEN|SECRET", line, re.I), line

    assert texts["cpu"].startswith("#") and "FROM python:3.11-" in texts["cpu"]
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", texts["gpu"]).group(1)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(base|runtime)-ubuntu\d+\.\d+", base)
    assert "FROM ${CUDA_IMAGE}" in texts["gpu"] and "python3.11" in texts["gpu"]


# ------------------------------------------------------------------------ the RayJob


def manifests() -> dict[str, dict]:
    docs = {d["kind"]: d for d in yaml.safe_load_all(RAYJOB.read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "RayJob", "Deployment", "Service"}
    return docs


def rayjob() -> tuple[dict, dict]:
    docs = manifests()
    return docs["RayJob"], docs["PersistentVolumeClaim"]


def pod_templates(job: dict) -> dict[str, dict]:
    spec = job["spec"]["rayClusterSpec"]
    out = {
        "head": spec["headGroupSpec"]["template"],
        "submitter": job["spec"]["submitterPodTemplate"],
    }
    out |= {f"worker-{g['groupName']}": g["template"] for g in spec["workerGroupSpecs"]}
    return out


def test_rayjob_runs_the_sweep_on_gpu_workers_with_shared_storage():
    job, pvc = rayjob()
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1"
    cmd = spec["entrypoint"].split()
    assert cmd[:2] == ["python", "sweeps/mnist_optimizers.py"] and (REPO / cmd[1]).exists()
    flags = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    ray_pin = next(
        p
        for p in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if p.startswith("ray[")
    )
    assert ray_pin.endswith("==" + spec["rayClusterSpec"]["rayVersion"])
    auth = spec["rayClusterSpec"]["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"], "the token comes from a Secret"

    # the storage path, results and data on the ReadWriteMany claim, on every Ray pod
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for name, tpl in pod_templates(job).items():
        if name == "submitter":
            continue
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in tpl["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert list(claims.values()) == [pvc["metadata"]["name"]], name
        (c,) = tpl["spec"]["containers"]  # no sidecar: the dashboard is its own Deployment
        mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] in claims)
        for flag in ("--storage-path", "--results-dir", "--data-root"):
            assert flags[flag].startswith(mount + "/"), (name, flag)
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["MLFLOW_TRACKING_URI"].startswith("http"), name
        assert not {k for k in env if re.search("TOKEN|PASSWORD", k)}, "secrets via authOptions"
        # probes: the image's entrypoint, with a role it has
        probe = c["readinessProbe"]["exec"]["command"]
        assert probe[:2] == ["cnnsweep-entrypoint", "health"] and probe[2] in entrypoint_roles()
        assert c["livenessProbe"] == c["readinessProbe"]
        assert tpl["spec"]["securityContext"]["runAsNonRoot"] is True

    for name, tpl in pod_templates(job).items():
        for c in tpl["spec"]["containers"]:
            res = c["resources"]
            assert res["requests"] and res["limits"], f"{name}: resources set"
            gpus = res["limits"].get("nvidia.com/gpu")
            assert (gpus is not None) == name.startswith("worker-"), f"{name}: GPUs"
            assert c["image"].endswith(":gpu" if gpus else ":cpu"), f"{name}: {c['image']}"
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0", "no trials on the head"


def test_rayjob_pod_templates_are_valid_kubernetes():
    """The pod templates (most of the manifest) and the claim, against Kubernetes' own
    schema, strictly: a misspelt field fails. KubeRay's CRD schema is not at hand here."""
    kv = module("kubernetes_validate")
    job, pvc = rayjob()
    docs = manifests()
    resources = [pvc, docs["Deployment"], docs["Service"]]
    for name, tpl in pod_templates(job).items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, **tpl}
        resources.append(pod)
    for r in resources:
        kv.validate(r, kv.latest_version(), strict=True)
    bad = {**resources[3], "spec": {**resources[3]["spec"], "securityContext": {"runAsUsr": 1}}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)


def test_rayjob_has_the_optuna_dashboard_on_the_heads_storage():
    """A Deployment runs the image's ``optuna-dashboard`` role on the Secret's storage, the
    one the head (where the sweep's driver runs) reads; the workers get no credentials; a
    ClusterIP Service (not published beyond the cluster) selects it on the role's port."""
    docs = manifests()
    job, dep, svc = docs["RayJob"], docs["Deployment"], docs["Service"]
    tpl = dep["spec"]["template"]
    (c,) = tpl["spec"]["containers"]
    assert c["args"] == ["optuna-dashboard"] and "optuna-dashboard" in entrypoint_roles()
    assert "command" not in c, "the image's entrypoint must run the role"
    assert c["image"].endswith(":cpu")
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe == ["cnnsweep-entrypoint", "health", "optuna-dashboard"]
    assert c["livenessProbe"] == c["readinessProbe"]
    assert tpl["spec"]["securityContext"]["runAsNonRoot"] is True

    def secret_refs(container: dict) -> list[str]:
        return [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]

    templates = pod_templates(job)
    (head,) = templates["head"]["spec"]["containers"]
    assert secret_refs(c) == secret_refs(head) == ["cnn-sweeps-optuna"]
    assert "CNNSWEEP_OPTUNA_STORAGE" in RAYJOB.read_text()  # the Secret's key, in the steps
    for name, t in templates.items():
        if name.startswith("worker-") or name == "submitter":
            for w in t["spec"]["containers"]:
                assert not secret_refs(w), f"{name} gets the database credentials"
    for container in (c, head):  # the storage URL (with its password) only via the Secret
        assert not [e for e in container.get("env", []) if "OPTUNA" in e["name"]]

    assert dep["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items()
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["type"] == "ClusterIP"
    (port,) = svc["spec"]["ports"]
    (container_port,) = c["ports"]
    assert port["targetPort"] == container_port["name"]
    assert port["port"] == container_port["containerPort"] == 8080  # the role's default
    assert '"${OPTUNA_DASHBOARD_PORT:=8080}"' in ENTRYPOINT.read_text()


# ------------------------------------------------------- the entrypoint outside Docker


def run_entrypoint(*args, env=None, drop=(), **kw) -> subprocess.CompletedProcess:
    """The entrypoint as a container runs it: this environment (less ``drop``) plus ``env``."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    env = {k: v for k, v in env.items() if k not in drop}
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=60, **kw
    )


def test_ray_head_role_creates_a_missing_token_owner_only(tmp_path):
    """On a fresh home the head role creates ~/.ray/auth_token (0600, folder 0700) before
    `ray start` (here `true`, so no node starts), names the file and never the token; a
    second start reuses it."""
    env = {"HOME": str(tmp_path), "RAY_BIN": "true", "CNNSWEEP_ROLE_FILE": str(tmp_path / "r")}
    drop = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
    first = run_entrypoint("ray-head", env=env, drop=drop)
    assert first.returncode == 0, first.stderr
    token = tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    secret = token.read_text()
    assert f"Ray auth token: {token} (created" in first.stderr
    assert secret not in first.stdout + first.stderr
    again = run_entrypoint("ray-head", env=env, drop=drop)
    assert again.returncode == 0 and f"{token} (existing)" in again.stderr
    assert token.read_text() == secret
    # a token path nobody can create is a clear error, not a head without auth
    bad = run_entrypoint("ray-head", env={**env, "RAY_AUTH_TOKEN_PATH": "/proc/no/token"})
    assert bad.returncode == 2
    assert "cannot create the Ray auth token at /proc/no/token" in bad.stderr


def test_entrypoint_usage_unknown_roles_and_commands(tmp_path):
    assert entrypoint_roles() == {"ray-head", "ray-worker", "mlflow", "optuna-dashboard", "health"}
    out = run_entrypoint()
    assert out.returncode == 2 and "usage" in out.stderr
    out = run_entrypoint("health", "ray-tail")
    assert out.returncode == 2 and "unknown role 'ray-tail'" in out.stderr
    # every serving role has a probe: with nothing listening it fails (1), not "unknown" (2)
    ports = (
        "RAY_DASHBOARD_PORT",
        "RAY_DASHBOARD_AGENT_PORT",
        "MLFLOW_PORT",
        "OPTUNA_DASHBOARD_PORT",
    )
    nothing = {v: str(free_port()) for v in ports}
    for role in entrypoint_roles() - {"health"}:
        out = run_entrypoint("health", role, env=nothing)
        assert out.returncode == 1, (role, out.stderr)
    # a container started with a plain command (no role) has nothing to probe
    role_file = {"CNNSWEEP_ROLE_FILE": str(tmp_path / "none")}
    assert run_entrypoint("health", env=role_file).returncode == 0
    out = run_entrypoint("python", "-c", "print('ran as a command')")
    assert out.returncode == 0 and out.stdout == "ran as a command\n"


def test_mlflow_role_builds_the_postgres_uri_without_exposing_the_password(tmp_path):
    """The URI reaches mlflow in its environment, percent-encoded; the password is on no
    command line and in no output. A missing password stops before mlflow starts."""
    fake = tmp_path / "mlflow"
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"open({str(tmp_path / 'seen.json')!r}, 'w').write(json.dumps("
        "{'argv': sys.argv[1:], 'uri': os.environ['MLFLOW_BACKEND_STORE_URI']}))\n"
    )
    fake.chmod(0o755)
    password = "p@ss/w:rd %&"
    env = {
        "MLFLOW_BIN": str(fake),
        "POSTGRES_PASSWORD": password,
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DB": "runs",
        "MLFLOW_PORT": "5123",
    }
    out = run_entrypoint("mlflow", "--dev-flag", env=env, drop=["MLFLOW_BACKEND_STORE_URI"])
    assert out.returncode == 0, out.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert (
        seen["uri"] == "postgresql+psycopg2://mlflow:p%40ss%2Fw%3Ard%20%25%26@db.internal:6543/runs"
    )
    assert seen["argv"][:5] == ["server", "--host", "0.0.0.0", "--port", "5123"]
    assert seen["argv"][-1] == "--dev-flag"
    assert seen["argv"][5:7] == ["--workers", "1"]
    assert not any("p@ss" in a or "postgresql" in a for a in seen["argv"])
    assert "p@ss" not in out.stdout + out.stderr and "p%40ss" not in out.stdout + out.stderr

    (tmp_path / "seen.json").unlink()
    unset = ["MLFLOW_BACKEND_STORE_URI", "POSTGRES_PASSWORD"]
    out = run_entrypoint("mlflow", env={"MLFLOW_BIN": str(fake)}, drop=unset)
    assert out.returncode == 2 and "POSTGRES_PASSWORD" in out.stderr
    assert not (tmp_path / "seen.json").exists()


def _fake_bin(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A stand-in for ``name`` that records its arguments and environment, then exits 0."""
    seen = tmp_path / f"{name}.json"
    fake = tmp_path / name
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"open({str(seen)!r}, 'w').write(json.dumps("
        "{'argv': sys.argv[1:], 'env': dict(os.environ)}))\n"
    )
    fake.chmod(0o755)
    return fake, seen


def test_optuna_storage_is_built_from_postgres_without_exposing_the_password(tmp_path):
    """The head exports CNNSWEEP_OPTUNA_STORAGE (database OPTUNA_DB, the password read from
    the compose secret's file, percent-encoded) into `ray start`'s environment, where the
    jobs' drivers find it; the password is on no command line, in no output, and reaches
    Ray only inside that URL. Workers get nothing; a given storage is kept. The dashboard
    role says nothing of the password when its server cannot be reached."""
    fake, seen = _fake_bin(tmp_path, "ray")
    password = "p@ss/w:rd %&"
    encoded = "p%40ss%2Fw%3Ard%20%25%26"
    secret = tmp_path / "postgres_password"
    secret.write_text(password + "\n")  # as `openssl rand -hex 16 > file` leaves it
    env = {
        "RAY_BIN": str(fake),
        "HOME": str(tmp_path),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(tmp_path / "ray_auth_token"),
        "CNNSWEEP_ROLE_FILE": str(tmp_path / "role"),
        "POSTGRES_PASSWORD_FILE": str(secret),
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "sweeper",
        "OPTUNA_DB": "studies",
    }
    drop = ["POSTGRES_PASSWORD", "POSTGRES_DB", "CNNSWEEP_OPTUNA_STORAGE"]

    def started(role: str, **kw) -> dict:
        seen.unlink(missing_ok=True)
        extra = kw.pop("env", {})
        out = run_entrypoint(role, env={**env, **extra}, drop=set(drop) - set(extra), **kw)
        assert out.returncode == 0, out.stderr
        assert password not in out.stdout + out.stderr and encoded not in out.stdout + out.stderr
        got = json.loads(seen.read_text())
        assert not any(password in a or encoded in a for a in got["argv"]), got["argv"]
        return {"argv": got["argv"], "env": got["env"], "stderr": out.stderr}

    head = started("ray-head")
    assert head["argv"][:2] == ["start", "--head"]
    url = "postgresql+psycopg2://sweeper:" + encoded + "@db.internal:6543/studies"
    assert head["env"]["CNNSWEEP_OPTUNA_STORAGE"] == url
    assert "POSTGRES_PASSWORD" not in head["env"], "Ray's processes get the URL only"
    assert "Optuna studies in database studies at db.internal" in head["stderr"]
    # the password from the environment instead (compose's mlflow service), default database
    del env["POSTGRES_PASSWORD_FILE"], env["OPTUNA_DB"]
    drop.remove("POSTGRES_PASSWORD")
    env["POSTGRES_PASSWORD"] = password
    storage = started("ray-head")["env"]["CNNSWEEP_OPTUNA_STORAGE"]
    assert storage == url.replace("/studies", "/optuna")
    # a storage given as such is kept; without a password the head gets none; workers none
    given = "sqlite:////data/optuna.db"
    kept = started("ray-head", env={"CNNSWEEP_OPTUNA_STORAGE": given})
    assert kept["env"]["CNNSWEEP_OPTUNA_STORAGE"] == given
    drop.append("POSTGRES_PASSWORD")
    assert "CNNSWEEP_OPTUNA_STORAGE" not in started("ray-head")["env"]
    drop.remove("POSTGRES_PASSWORD")
    assert "CNNSWEEP_OPTUNA_STORAGE" not in started("ray-worker")["env"]

    # the dashboard role, its PostgreSQL unreachable: exit 2, the password nowhere
    nothing = {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(free_port())}
    out = run_entrypoint("optuna-dashboard", env={**env, **nothing}, drop=drop)
    assert out.returncode == 2, out.stderr
    assert "Connection refused" in out.stderr or "could not connect" in out.stderr, out.stderr
    assert password not in out.stdout + out.stderr and encoded not in out.stdout + out.stderr
    out = run_entrypoint("optuna-dashboard", env=env, drop=[*drop, "POSTGRES_PASSWORD"])
    assert out.returncode == 2 and "CNNSWEEP_OPTUNA_STORAGE" in out.stderr


def _status(url: str, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def start_role(args: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """The entrypoint in its own session (so teardown finds its whole tree), output to log."""
    with open(log, "w") as f:
        return subprocess.Popen(
            [str(ENTRYPOINT), *args],
            cwd=cwd,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _status(url)
            return
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")


def _tree(pid: int) -> list:
    with contextlib.suppress(psutil.Error):
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    return []


@pytest.mark.slow
def test_mlflow_role_serves_on_sqlite_outside_docker(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "mlartifacts"),
        "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow,mlflow:*,127.0.0.1,127.0.0.1:*",
        "CNNSWEEP_ROLE_FILE": str(tmp_path / "role"),
    }
    log = tmp_path / "mlflow.log"
    proc = start_role(["mlflow"], tmp_path, env, log)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{uri}/health", proc, log)
        assert _status(f"{uri}/health") == 200
        assert (tmp_path / "role").read_text() == "mlflow\n"
        assert run_entrypoint("health", "mlflow", env=env).returncode == 0
        assert run_entrypoint("health", env=env).returncode == 0  # the role it started as
        # what the compose nodes send (Host: mlflow:5000) is allowed, anything else is not
        api = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(api, {"Host": f"mlflow:{port}"}) == 200
        assert _status(api, {"Host": "attacker.example"}) == 403
        # a run's artifact lands in the artifacts destination (the volume in compose)
        code = (
            "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]);"
            "r = mlflow.start_run(); mlflow.log_text('hello', 'hello.txt'); mlflow.end_run();"
            "print(r.info.run_id)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, uri], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        run_id = out.stdout.split()[-1]
        assert list((tmp_path / "mlartifacts").rglob(f"*{run_id}*/**/hello.txt"))
        assert (tmp_path / "mlflow.db").stat().st_size > 0
        # `docker stop` sends SIGTERM to the role's process (exec'd, so it is PID 1)
        tree = _tree(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert not alive, f"left running after SIGTERM: {alive}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


def _listening(tree: list) -> list[tuple[str, int]]:
    found = []
    for p in tree:
        with contextlib.suppress(psutil.Error):
            conns = p.net_connections(kind="inet")
            found += [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return sorted(set(found))


def _study_names(uri: str) -> list[str]:
    with urllib.request.urlopen(f"{uri}/api/studies", timeout=10) as r:
        return sorted(s["study_name"] for s in json.load(r)["study_summaries"])


def test_optuna_dashboard_role_serves_on_sqlite_outside_docker(tmp_path):
    """The role on a SQLite file that does not exist yet: it writes Optuna's tables (the
    dashboard itself would exit on the empty file), answers on loopback only, shows a
    study a sweep writes, keeps the storage URL off its command line, ends on SIGTERM."""
    import optuna

    port = free_port()
    db = tmp_path / "optuna.db"
    storage = f"sqlite:///{db}"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "CNNSWEEP_OPTUNA_STORAGE": storage,
        "OPTUNA_DASHBOARD_HOST": "127.0.0.1",
        "OPTUNA_DASHBOARD_PORT": str(port),
        "CNNSWEEP_ROLE_FILE": str(tmp_path / "role"),
    }
    log = tmp_path / "optuna-dashboard.log"
    proc = start_role(["optuna-dashboard"], tmp_path, env, log)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{uri}/api/studies", proc, log)
        assert _status(f"{uri}/api/studies") == 200, log.read_text()[-3000:]
        assert _study_names(uri) == []
        assert (tmp_path / "role").read_text() == "optuna-dashboard\n"
        assert run_entrypoint("health", "optuna-dashboard", env=env).returncode == 0
        assert run_entrypoint("health", env=env).returncode == 0  # the role it started as

        study = optuna.create_study(storage=storage, study_name="mnist_optimizers-1")
        study.tell(study.ask(), 0.5)
        assert _study_names(uri) == ["mnist_optimizers-1"]

        tree = _tree(proc.pid)
        assert _listening(tree) == [("127.0.0.1", port)]
        assert not [p.cmdline() for p in tree if str(db) in " ".join(p.cmdline())]
        assert "sqlite://..." in log.read_text() and str(db) not in log.read_text()

        os.kill(proc.pid, signal.SIGTERM)  # `docker stop`; the role's process is PID 1
        proc.wait(30)
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert not alive, f"left running after SIGTERM: {alive}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


@contextlib.contextmanager
def _postgres(superuser: str, password: str):
    """A private PostgreSQL on 127.0.0.1:<free port> whose superuser is ``superuser``, with a
    database of that name: what the compose file's postgres image makes of POSTGRES_USER."""
    from test_mlflow_postgres import PG_BIN, _as_postgres, _give_to_postgres, _need_postgres

    _need_postgres()
    import psycopg2

    root = Path(tempfile.mkdtemp(prefix="pg_optuna_"))  # postgres cannot enter pytest's
    _give_to_postgres(root)
    data, port, pwfile = root / "data", free_port(), root / "pwfile"
    pwfile.write_text(password + "\n")
    _give_to_postgres(pwfile)
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", superuser, f"--pwfile={pwfile}"]
        _as_postgres([*initdb, "--auth=scram-sha-256", "--locale=C"], cwd=root, timeout=300)
        pwfile.unlink()
        started = True
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
        start = [*pg_ctl, "start", "-w", "-t", "300", "-l", str(root / "log"), "-o", opts]
        _as_postgres(start, cwd=root, timeout=330)
        conn = psycopg2.connect(
            host="127.0.0.1", port=port, user=superuser, password=password, dbname="postgres"
        )
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{superuser}"')
        conn.close()
        yield port
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                _as_postgres([*pg_ctl, "stop", "-m", "fast", "-w"], cwd=root, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_optuna_dashboard_role_creates_its_database_on_postgres(tmp_path):
    """As compose runs it: the role, given the compose variables and the password secret's
    file, creates database ``optuna`` beside MLflow's on a real PostgreSQL (once: a second
    start finds it), with Optuna's tables, and serves it; the password is on no command
    line and in no log; a study written through the URL the head role exports for its
    jobs is the one the dashboard shows."""
    import optuna
    import psycopg2

    password = secrets.token_hex(8) + "@/:%"
    leaks = (password, urllib.parse.quote(password, safe=""))  # as typed, as in the URL
    secret = tmp_path / "postgres_password"
    secret.write_text(password + "\n")
    with _postgres("mlflow", password) as pg_port:
        port = free_port()
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(pg_port),
            "POSTGRES_USER": "mlflow",
            "POSTGRES_PASSWORD_FILE": str(secret),
            "OPTUNA_DB": "optuna",
            "OPTUNA_DASHBOARD_HOST": "127.0.0.1",
            "OPTUNA_DASHBOARD_PORT": str(port),
            "CNNSWEEP_ROLE_FILE": str(tmp_path / "role"),
        }
        for k in ("POSTGRES_PASSWORD", "POSTGRES_DB", "CNNSWEEP_OPTUNA_STORAGE"):
            env.pop(k, None)
        uri = f"http://127.0.0.1:{port}"
        for start in ("first", "again"):
            log = tmp_path / f"optuna-dashboard-{start}.log"
            proc = start_role(["optuna-dashboard"], tmp_path, env, log)
            try:
                _wait(f"{uri}/api/studies", proc, log)
                assert _status(f"{uri}/api/studies") == 200, log.read_text()[-3000:]
                assert run_entrypoint("health", "optuna-dashboard", env=env).returncode == 0
                tree = _tree(proc.pid)
                assert _listening(tree) == [("127.0.0.1", port)]
                cmdlines = " ".join(" ".join(p.cmdline()) for p in tree)
                assert not [s for s in leaks if s in cmdlines] and "psycopg2" not in cmdlines
                created = "created database optuna" in log.read_text()
                assert created == (start == "first"), log.read_text()
                if start == "first":
                    # the URL the head exports for its jobs reaches the dashboard's database
                    fake, seen = _fake_bin(tmp_path, "ray")
                    head_env = {**env, "RAY_BIN": str(fake), "RAY_AUTH_MODE": "off"}
                    assert run_entrypoint("ray-head", env=head_env).returncode == 0
                    storage = json.loads(seen.read_text())["env"]["CNNSWEEP_OPTUNA_STORAGE"]
                    study = optuna.create_study(storage=storage, study_name="cifar_cnns-7")
                    study.tell(study.ask(), 0.25)
                assert _study_names(uri) == ["cifar_cnns-7"]
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            assert not [s for s in leaks if s in log.read_text()]

        conn = psycopg2.connect(
            host="127.0.0.1", port=pg_port, user="mlflow", password=password, dbname="postgres"
        )
        with conn, conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
            assert sorted(r[0] for r in cur.fetchall()) == ["mlflow", "optuna", "postgres"]
        conn.close()
        conn = psycopg2.connect(
            host="127.0.0.1", port=pg_port, user="mlflow", password=password, dbname="optuna"
        )
        with conn, conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {r[0] for r in cur.fetchall()}
        conn.close()
        assert {"studies", "trials", "alembic_version", "version_info"} <= tables


RAY_PORT_FLAGS = (
    "object-manager",
    "node-manager",
    "metrics-export",
    "runtime-env-agent",
    "dashboard-agent-grpc",
    "ray-client-server",
)


def _ray_procs(gcs_port: int, ray_tmp: str, pid: int) -> list:
    """This test's Ray processes: the role's tree and every process naming its GCS port
    or its temp dir (agents and workers that left the tree), with their children."""
    mark = re.compile(rf"(:{gcs_port}|--gcs_server_port={gcs_port}|--port={gcs_port})(?!\d)")
    found = {p.pid: p for p in _tree(pid)}
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if mark.search(cmdline) or ray_tmp in cmdline:
            found |= {c.pid: c for c in _tree(p.pid)}
    return list(found.values())


@pytest.mark.slow
def test_ray_head_role_serves_with_token_auth_outside_docker(tmp_path):
    """The head as compose starts it, on loopback: it answers `ray status` and job
    submissions with the token only, its health probe passes, a job's driver runs in the
    directory `ray start` ran in (the image's WORKDIR, which the RayJob relies on), and
    SIGTERM stops every process it started."""
    import ray

    ray_tmp = tempfile.mkdtemp(prefix="rdock", dir="/tmp")  # short: Ray's socket paths
    token_file = tmp_path / "ray_auth_token"
    token_file.write_text(secrets.token_hex(32))
    gcs, dashboard, agent = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path),  # nothing written to the user's ~/.ray
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else Ray binds the external address
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),  # as the compose secret
        "RAY_GCS_PORT": str(gcs),
        "RAY_DASHBOARD_HOST": "127.0.0.1",
        "RAY_DASHBOARD_PORT": str(dashboard),
        "RAY_DASHBOARD_AGENT_PORT": str(agent),
        "RAY_NODE_IP": "127.0.0.1",
        "RAY_NUM_CPUS": "1",
        "AUTOSCALER_METRIC_PORT": str(free_port()),
        "DASHBOARD_METRIC_PORT": str(free_port()),
        "CNNSWEEP_ROLE_FILE": str(tmp_path / "role"),
    }
    extra = [f"--{n}-port={free_port()}" for n in RAY_PORT_FLAGS] + [f"--temp-dir={ray_tmp}"]
    workdir = tmp_path / "app"
    workdir.mkdir()
    log = tmp_path / "ray-head.log"
    proc = start_role(["ray-head", *extra], workdir, env, log)
    base = f"http://127.0.0.1:{dashboard}"
    try:
        _wait(f"{base}/api/gcs_healthz", proc, log)
        assert (tmp_path / "role").read_text() == "ray-head\n"
        # the raylet's agent comes up after the GCS: probe as a health check does, with retries
        for _ in range(60):
            if run_entrypoint("health", "ray-head", env=env).returncode == 0:
                break
            time.sleep(1)
        assert run_entrypoint("health", "ray-head", env=env).returncode == 0, log.read_text()
        assert run_entrypoint("health", env=env).returncode == 0  # the role it started as

        auth = {"Authorization": f"Bearer {token_file.read_text()}"}
        assert _status(f"{base}/api/version") == 401, "the dashboard answers without a token"
        with urllib.request.urlopen(
            urllib.request.Request(f"{base}/api/version", headers=auth)
        ) as r:
            assert yaml.safe_load(r.read())["ray_version"] == ray.__version__

        # the autoscaler's first report lags the GCS ("No cluster status. It may take a few
        # seconds"; seen in CI): ask again, as a person would
        for _ in range(60):
            status = subprocess.run(
                [str(BIN / "ray"), "status", "--address", f"127.0.0.1:{gcs}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if "No cluster status" not in status.stdout:
                break
            time.sleep(1)
        assert status.returncode == 0, status.stderr[-2000:]
        assert re.search(r"0\.0/1\.0 CPU", status.stdout), status.stdout

        # Ray's job agent can lag behind the GCS: retry "No available agent" as `make run` does
        job = [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            base,
            "--",
            "python",
            "-c",
            "import os; print('cwd=' + os.getcwd())",
        ]
        for _ in range(12):
            out = subprocess.run(job, env=env, capture_output=True, text=True, timeout=180)
            if "No available agent" not in out.stdout + out.stderr:
                break
            time.sleep(5)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert f"cwd={workdir}" in out.stdout

        # every socket of this cluster is on loopback
        for p in _ray_procs(gcs, ray_tmp, proc.pid):
            with contextlib.suppress(psutil.Error):
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        assert c.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1"), (p.name(), c)

        # `docker stop`: SIGTERM to the role's process drains the node and ends it all
        procs = _ray_procs(gcs, ray_tmp, proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(45)
        _, alive = psutil.wait_procs(procs, timeout=20)
        assert not alive, f"left running after SIGTERM: {[p.pid for p in alive]}"
    finally:
        terminate_all(_ray_procs(gcs, ray_tmp, proc.pid))
        stop_ray_cluster(gcs)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        shutil.rmtree(ray_tmp, ignore_errors=True)
