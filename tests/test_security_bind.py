"""``make up`` binds every service it starts to 127.0.0.1 only.

Runs the real ``make up`` (state in a temp folder, every port free so it cannot collide
with a cluster the user runs), then asks the kernel (psutil) for every listening socket
owned by that Ray cluster (GCS, raylet, dashboard and its modules, agents, client
server, autoscaler monitor, a worker), that MLflow server (and its uvicorn worker) and
that optuna-dashboard: all must be on loopback, and none must answer on the machine's
other addresses.
Cleanup kills only what this test started: never ``make down`` or ``ray stop``, which
would also stop a user's cluster."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import psutil
import pytest
from conftest import REPO, free_port, ray_env, stop_ray_cluster, terminate_all

pytestmark = pytest.mark.slow

# Ray ports `make up` leaves at their defaults; the test passes free ones via RAY_START_ARGS.
RAY_PORT_FLAGS = (
    "object-manager",
    "node-manager",
    "metrics-export",
    "runtime-env-agent",
    "dashboard-agent-listen",
    "dashboard-agent-grpc",
    "ray-client-server",
)
# Fixed ports (44217, 44227) with no `ray start` flag, only these environment variables.
RAY_PORT_ENV = ("AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT")

# A driver that leaves a detached actor behind, so a worker's sockets are checked too.
PROBE = """
import os, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)

@ray.remote(num_cpus=0)
class BindProbe:
    def pid(self):
        return os.getpid()

probe = BindProbe.options(name="bind-probe", lifetime="detached").remote()
print(ray.get(probe.pid.remote(), timeout=120))
"""


def _owned(ray_port: int, mlflow_port: int, optuna_port: int, ray_tmp: str) -> list[list]:
    """[Ray, MLflow, optuna-dashboard processes] of the services this test started: those
    whose command line names the GCS port on any address (or this test's Ray temp dir; or
    the MLflow port; or optuna-dashboard's port), plus all their descendants (agents,
    workers, dashboard modules)."""
    ray_marks = re.compile(
        rf"([\d.]+:{ray_port}|\]:{ray_port}|--gcs_server_port={ray_port}|--port={ray_port})"
        rf"(?!\d)|{re.escape(ray_tmp)}"
    )
    optuna_marks = re.compile(rf"optuna-dashboard .*--port[ =]{optuna_port}(?!\d)")
    mlflow_marks = re.compile(rf"--port[ =]{mlflow_port}(?!\d)")
    roots: dict[str, list] = {"ray": [], "mlflow": [], "optuna": []}
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if ray_marks.search(cmdline):
            roots["ray"].append(p)
        elif optuna_marks.search(cmdline):
            roots["optuna"].append(p)
        elif mlflow_marks.search(cmdline):
            roots["mlflow"].append(p)
    out = []
    for kind in ("ray", "mlflow", "optuna"):
        procs = {}
        for root in roots[kind]:
            with contextlib.suppress(psutil.Error):
                for p in [root, *root.children(recursive=True)]:
                    procs[p.pid] = p
        out.append(list(procs.values()))
    return out


def _listening(procs) -> list[tuple[str, int, str, int, str]]:
    """(process name, pid, address, port, proto) for every TCP LISTEN socket and every
    bound, unconnected UDP socket (one that takes datagrams from anyone) of ``procs``."""
    found = []
    for p in procs:
        try:
            name, conns, cmdline = p.name(), p.net_connections(kind="inet"), p.cmdline()
        except psutil.NoSuchProcess:
            continue
        if name.startswith("python"):  # name it by its script or module
            args = [a for a in cmdline[1:] if a.endswith(".py")]
            args += [b for a, b in zip(cmdline, cmdline[1:], strict=False) if a == "-m"]
            name = args[0].rsplit("/", 1)[-1] if args else name
        for c in conns:
            if c.type == socket.SOCK_STREAM and c.status == psutil.CONN_LISTEN:
                found.append((name, p.pid, c.laddr.ip, c.laddr.port, "tcp"))
            elif c.type == socket.SOCK_DGRAM and c.laddr and not c.raddr:
                found.append((name, p.pid, c.laddr.ip, c.laddr.port, "udp"))
    return sorted(set(found), key=lambda s: (s[3], s[0]))


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # gRPC reports ::ffff:127.0.0.1
    return (mapped or addr).is_loopback


def _external_addresses() -> list[str]:
    """This machine's own non-loopback addresses (where a 0.0.0.0 bind would answer)."""
    return sorted(
        {
            a.address.split("%")[0]
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)
            and not _is_loopback(a.address)
            and not a.address.lower().startswith("fe80")  # link-local needs a scope
        }
    )


def _answers(url: str) -> int:
    """The HTTP status ``url`` answers with (an HTTP error is still an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_make_up_binds_loopback_only(tmp_path):
    ray_port, dashboard_port, mlflow_port = free_port(), free_port(), free_port()
    optuna_port = free_port()
    flag_ports = {f"--{n}-port": free_port() for n in RAY_PORT_FLAGS}
    env_ports = {k: free_port() for k in RAY_PORT_ENV}
    # Ray's own temp dir, so this cluster does not become /tmp/ray's current cluster (the
    # one a bare ray.init() joins); short, since Ray's unix socket paths live under it.
    ray_tmp = tempfile.mkdtemp(prefix="rbind", dir="/tmp")
    start_args = " ".join(f"{k}={v}" for k, v in flag_ports.items()) + f" --temp-dir={ray_tmp}"
    env = {**ray_env(), **{k: str(v) for k, v in env_ports.items()}}
    # the Makefile's defaults are under test (the Optuna storage: SQLite in RUN_DIR)
    for var in ("HOST", "RAY_START_ARGS", "RUN_DIR", "OPTUNA_STORAGE"):
        env.pop(var, None)
    cmd = [
        "make",
        # the venv running this test is installed: no pip run when pyproject.toml is newer
        "-o",
        "install",
        "up",
        f"RUN_DIR={tmp_path}",
        f"RAY_PORT={ray_port}",
        f"DASHBOARD_PORT={dashboard_port}",
        f"MLFLOW_PORT={mlflow_port}",
        f"OPTUNA_PORT={optuna_port}",
        f"RAY_START_ARGS={start_args}",
    ]
    t0 = time.monotonic()
    try:
        # Output to a file, not a pipe: the shell `up` leaves in the background to run
        # mlflow keeps make's stdout open, so reading a pipe to EOF would never end.
        with open(tmp_path / "make-up.out", "w") as log:
            rc = subprocess.run(
                cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=300,
                start_new_session=True,
            ).returncode
        assert rc == 0, (tmp_path / "make-up.out").read_text()[-3000:]
        print(f"\nmake up: {time.monotonic() - t0:.0f} s")

        probe = subprocess.run(
            [sys.executable, "-c", PROBE, f"127.0.0.1:{ray_port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert probe.returncode == 0, probe.stdout[-2000:] + probe.stderr[-2000:]
        worker_pid = int(probe.stdout.split()[-1])

        # Some listeners (dashboard modules, metrics servers) come up after `ray start`
        # returns: wait for every port this test gave out before taking the inventory.
        expected = {ray_port, dashboard_port, mlflow_port, optuna_port}
        expected |= set(flag_ports.values()) | set(env_ports.values())
        deadline = time.monotonic() + 60
        while True:
            ray_procs, mlflow_procs, optuna_procs = _owned(
                ray_port, mlflow_port, optuna_port, ray_tmp
            )
            ray_socks, mlflow_socks = _listening(ray_procs), _listening(mlflow_procs)
            optuna_socks = _listening(optuna_procs)
            socks = ray_socks + mlflow_socks + optuna_socks
            missing = expected - {s[3] for s in socks}
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(2)

        roles = {ray_port: "GCS", dashboard_port: "dashboard", mlflow_port: "MLflow"}
        roles |= {optuna_port: "Optuna dashboard"}
        roles |= {v: k[2:] for k, v in flag_ports.items()}
        roles |= {v: k for k, v in env_ports.items()}
        print(f"{'process':28} {'pid':>7} {'address':18} {'port':>5} proto  port given as")
        for name, pid, ip, port, proto in socks:
            role = roles.get(port, "(Ray's choice)")
            print(f"{name:28} {pid:>7} {ip:18} {port:>5} {proto:6} {role}")
        if missing:
            print(f"ports given out but not listened on: {sorted(missing)}")

        ray_ports = {s[3] for s in ray_socks}
        assert ray_port in ray_ports, f"no GCS listener on {ray_port}: {ray_socks}"
        assert dashboard_port in ray_ports, f"no dashboard on {dashboard_port}: {ray_socks}"
        assert mlflow_port in {s[3] for s in mlflow_socks}, f"no MLflow: {mlflow_socks}"
        # the dashboard `up` started is the process listening there (not one left over)
        assert {s[3] for s in optuna_socks} == {optuna_port}, f"optuna: {optuna_socks}"
        assert worker_pid in {p.pid for p in ray_procs}, "the probe's worker was not found"
        assert worker_pid in {s[1] for s in ray_socks}, "the probe's worker listens nowhere"

        exposed = [s for s in socks if not _is_loopback(s[2])]
        assert not exposed, f"sockets not on loopback: {exposed}"

        # What the kernel says, checked from outside: nothing answers on another address.
        print(f"this machine's other addresses, where nothing may answer: {_external_addresses()}")
        for ip in _external_addresses():
            for port in sorted({s[3] for s in socks if s[4] == "tcp"}):
                family = socket.AF_INET6 if ":" in ip else socket.AF_INET
                with socket.socket(family) as s:
                    s.settimeout(2)
                    assert s.connect_ex((ip, port)) != 0, f"{ip}:{port} accepts connections"

        assert _answers(f"http://127.0.0.1:{dashboard_port}/") < 500
        assert _answers(f"http://127.0.0.1:{mlflow_port}/health") == 200
        assert _answers(f"http://127.0.0.1:{optuna_port}/api/studies") == 200
        assert (tmp_path / "optuna.db").stat().st_size > 0, "Optuna's schema in RUN_DIR"
    finally:
        ray_procs, mlflow_procs, optuna_procs = _owned(ray_port, mlflow_port, optuna_port, ray_tmp)
        stop_ray_cluster(ray_port)
        # stop_ray_cluster matches command lines; the agents (ray::DashboardAgent...) do
        # not name the port and outlive their raylet, so the whole tree found above goes.
        terminate_all(ray_procs + mlflow_procs + optuna_procs)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        print(f"total: {time.monotonic() - t0:.0f} s")
