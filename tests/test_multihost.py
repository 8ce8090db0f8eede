"""A Ray cluster of three hosts, each its own network namespace on one LAN
(tests/netns_hosts.py): a head and two workers started by ``docker/entrypoint.sh``'s
``ray-head`` and ``ray-worker`` roles, token auth on, 1 CPU each, the storage path one
folder all of them see (as NFS would). Everything of the head host (Ray head, MLflow and
Optuna Dashboard bound to 127.0.0.1 as ``make up`` binds them, the sweep's driver) runs
in the head's namespace.

- ``test_outsiders_cannot_join_submit_or_reach``: a fourth host with a wrong token, or
  none, cannot join (its ``ray start`` fails and its node never shows) nor submit a job
  (the same ``ray job submit`` with the token runs); what is bound to the head's
  127.0.0.1 cannot be reached from the other hosts, while the GCS and dashboard can. (The
  dashboard is bound to the head's LAN address here, for the job check; ``make up`` binds
  it to 127.0.0.1 like MLflow and Optuna Dashboard, which stand for it.)
- ``test_sweep_survives_a_dead_and_a_partitioned_host``: one sweep, both faults in
  sequence (one cluster start-up instead of two, and the second fault then hits a sweep
  that is already recovering from the first, as happens when a rack goes): worker 1's
  processes are all SIGKILLed; once Ray has declared it dead, worker 2's cable is cut
  for longer than Ray's node-failure timeout, then restored. Every trial finishes, the
  lost hosts' trials restart from their checkpoints on the head, no epoch after a fault
  ran on the lost host, none is lost or duplicated (``epochs.parquet``, MLflow, Optuna;
  Tune's own result.json may list the epoch the fault interrupted twice: see the test).

The module's fixture removes the namespaces (and so their links and bridge) and kills
every process in them whatever happens, then asserts that nothing is left. Both tests
log what they measured (``-s``, or ``$CNNSWEEP_FAULT_REPORT`` as tests/test_faults.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import REPO
from netns_hosts import Hosts, unavailable
from test_faults import check_nothing_lost, finish, report, restored, sweep_cmd, trial_results

pytestmark = [pytest.mark.slow, pytest.mark.faults]

ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
BIN = Path(sys.executable).parent
HOSTS = ("hd", "w1", "w2", "x")  # head, two workers, and an outsider on the same LAN
GCS, DASHBOARD, MLFLOW, OPTUNA = 6379, 8265, 5000, 8080  # each host has its own ports
NAME, EPOCHS = "multihost", 8
LRS = "0.001,0.003,0.01"  # three trials: one per host's CPU, so each host runs one

# Ray's node-failure detection, set on the head (the GCS reads RAY_<name> of its own
# environment): a check every PERIOD_S that fails after TIMEOUT_S, THRESHOLD failures in
# a row and the node is dead. Ray 2.60's defaults: 3 s, 10 s, 5 (initial delay 5 s).
PERIOD_S, TIMEOUT_S, THRESHOLD = 1.0, 2.0, 3
HEALTH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": str(int(PERIOD_S * 1000)),
    "RAY_health_check_timeout_ms": str(int(TIMEOUT_S * 1000)),
    "RAY_health_check_failure_threshold": str(THRESHOLD),
}
# A host whose processes died refuses the check at once; a silent one (a cut cable, a
# host without power) makes each check wait out its timeout.
DEAD_S = THRESHOLD * PERIOD_S  # 3 s here, 15 s with Ray's defaults
SILENT_S = THRESHOLD * (PERIOD_S + TIMEOUT_S)  # 9 s here, 65 s with Ray's defaults
CUT_S = SILENT_S + 6  # the cable stays out well past the timeout
SLACK_S = 10  # a loaded 2-core machine answers late; a detection later than this fails


def host_env(tmp: Path) -> dict:
    """A host's environment: the venv's tools, the cluster's token, nothing of this
    process' Ray (conftest keeps the test process' Ray on loopback, with
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which makes `ray start --address` refuse)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CNNSWEEP_"))}
    return {
        **env,
        "PATH": f"{BIN}:{env['PATH']}",
        "RAY_BIN": str(BIN / "ray"),
        "PYTHON_BIN": sys.executable,
        "MLFLOW_BIN": str(BIN / "mlflow"),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(tmp / "token" / "auth_token"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "RAY_NUM_CPUS": "1",
    }


class NodeWatch(threading.Thread):
    """The cluster's nodes as the head's dashboard reports them (Ray's state API, with
    the token), polled from inside the head host; keeps when each node was first seen
    alive and first seen dead."""

    def __init__(self, lan: Hosts, token: str):
        super().__init__(daemon=True)
        self.lan, self.token = lan, token
        self.url = f"http://{lan.ip['hd']}:{DASHBOARD}/api/v0/nodes?limit=100"
        self.seen: dict[str, dict] = {}  # node_id -> {ip, alive_at, dead_at}
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def nodes(self) -> list[dict]:
        req = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)["data"]["result"]["result"]

    def run(self) -> None:
        self.lan.enter("hd")
        while not self.stopped.wait(0.25):
            try:
                rows, now = self.nodes(), time.time()
            except (OSError, ValueError, KeyError):
                continue  # the dashboard is starting, or busy
            with self.lock:
                for n in rows:
                    s = self.seen.setdefault(n["node_id"], {"ip": n["node_ip"]})
                    key = "alive_at" if n["state"] == "ALIVE" else "dead_at"
                    s.setdefault(key, now)

    def nodes_seen(self) -> dict[str, dict]:
        with self.lock:
            return {i: dict(s) for i, s in self.seen.items()}

    def alive(self) -> dict[str, str]:
        """ip -> node id of the nodes alive now."""
        return {s["ip"]: i for i, s in self.nodes_seen().items() if "dead_at" not in s}

    def dead_at(self, ip: str) -> float | None:
        return next((s.get("dead_at") for s in self.nodes_seen().values() if s["ip"] == ip), None)


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := pred():
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{proc.args[4:6]} exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def exited(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped by its parent
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def lan():
    """The hosts' namespaces; afterwards (also after a failure or Ctrl-C) every process
    in them is killed and they are deleted, then checked gone."""
    if why := unavailable():
        pytest.fail(f"tests/test_multihost.py needs network namespaces: {why}")
    hosts = Hosts(HOSTS)
    # each host's Ray temp dir (`ray start --temp-dir`) under this one: Ray's unix sockets
    # live there, so the path must stay short (pytest's tmp_path is too long)
    ray_tmp = Path(tempfile.mkdtemp(prefix=hosts.tag, dir="/tmp"))
    hosts.ray_tmp = ray_tmp
    try:
        hosts.up()
        yield hosts
    finally:
        left = hosts.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not any(left.values()), f"left behind: {left}"
    strays = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if str(ray_tmp) in " ".join(p.info["cmdline"] or []):
            strays.append(p.info)
    assert not strays, f"processes of this test still running: {strays}"


@pytest.fixture(scope="module")
def cluster(lan, tmp_path_factory):
    """Ray head (with MLflow and Optuna Dashboard beside it) and two workers, each on its
    host; yields what the tests need."""
    tmp = tmp_path_factory.mktemp("multihost")
    token = tmp / "token" / "auth_token"
    env = host_env(tmp)
    out = subprocess.run(
        [sys.executable, "-m", "sweeps.cluster", "token"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and token.stat().st_mode & 0o777 == 0o600, out
    hd = lan.ip["hd"]
    (tmp / "ray").mkdir()  # the storage path; Optuna Dashboard reads the sweep's study there
    t0 = time.time()

    def role(host: str, args: list, cwd: Path = REPO, **extra) -> subprocess.Popen:
        """docker/entrypoint.sh ROLE on ``host``, as its container would run it."""
        log = tmp / f"{host}-{args[0]}.log"
        extra["CNNSWEEP_ROLE_FILE"] = str(tmp / f"role-{host}-{args[0]}")
        return lan.popen(host, [ENTRYPOINT, *args], log, env={**env, **extra}, cwd=cwd)

    procs = {
        "head": role(
            "hd",
            ["ray-head", f"--temp-dir={lan.ray_tmp}/hd"],
            RAY_NODE_IP=hd,
            RAY_DASHBOARD_HOST=hd,
            **HEALTH,
        ),
        # MLflow and Optuna Dashboard as `make up` binds them: the head host's loopback
        "mlflow": role(
            "hd",
            ["mlflow"],
            cwd=tmp,
            MLFLOW_HOST="127.0.0.1",
            MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp}/mlflow.db",
            MLFLOW_ARTIFACTS_DESTINATION=str(tmp / "mlartifacts"),
        ),
        "optuna": role(
            "hd",
            ["optuna-dashboard"],
            OPTUNA_DASHBOARD_HOST="127.0.0.1",
            CNNSWEEP_OPTUNA_STORAGE=f"sqlite:///{tmp}/ray/optuna.db",
        ),
    }
    watch = NodeWatch(lan, token.read_text().strip())
    watch.start()
    wait_for(lambda: hd in watch.alive(), 180, "the Ray head", procs["head"])
    for w in ("w1", "w2"):
        procs[w] = role(
            w,
            ["ray-worker", f"--temp-dir={lan.ray_tmp}/{w}"],
            RAY_HEAD_ADDRESS=f"{hd}:{GCS}",
            RAY_NODE_IP=lan.ip[w],
        )
    for w in ("w1", "w2"):
        wait_for(lambda w=w: lan.ip[w] in watch.alive(), 180, f"worker {w}", procs[w])
    for what, port in (("mlflow", f"{MLFLOW}/health"), ("optuna", f"{OPTUNA}/api/studies")):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda url=url: lan.call("hd", http_ok, url), 120, what, procs[what])
    print(f"\ncluster of {len(watch.alive())} hosts up in {time.time() - t0:.1f} s")
    yield {"tmp": tmp, "env": env, "watch": watch, "procs": procs, "token": token}
    watch.stopped.set()
    watch.join(10)


def ray_start_outsider(lan: Hosts, tmp: Path, env: dict, how: str) -> subprocess.Popen:
    """`ray start --address` on the outsider host: with a token that is not the cluster's
    (``wrong``), or sending none (``none``: token auth off on its side)."""
    if how == "wrong":
        env = {**env, "RAY_AUTH_TOKEN_PATH": str(tmp / "wrong_token")}
    else:
        env = {**env, "RAY_AUTH_MODE": "disabled"}
    cmd = [
        BIN / "ray",
        "start",
        f"--address={lan.ip['hd']}:{GCS}",
        "--num-cpus=1",
        f"--node-ip-address={lan.ip['x']}",
        f"--temp-dir={lan.ray_tmp}/x-{how}",
        "--disable-usage-stats",
    ]
    return lan.popen("x", cmd, tmp / f"x-{how}.log", env=env)


def test_outsiders_cannot_join_submit_or_reach(cluster, lan):
    tmp, env, watch = cluster["tmp"], cluster["env"], cluster["watch"]
    hd = lan.ip["hd"]
    (tmp / "wrong_token").write_text("0" * 64)  # the right length, not the cluster's
    (tmp / "wrong_token").chmod(0o600)
    # (a) joining without the token: both attempts run at once (Ray retries ~20 s)
    joins = {how: ray_start_outsider(lan, tmp, env, how) for how in ("wrong", "none")}
    # ... nor submitting a job; the same command with the token runs its job
    submit = [BIN / "ray", "job", "submit", f"--address=http://{hd}:{DASHBOARD}", "--"]
    bad = {**env, "RAY_AUTH_TOKEN_PATH": str(tmp / "wrong_token")}
    out = lan.run("x", [*submit, "echo", "ran-from-outsider"], env=bad)
    assert out.returncode != 0, out.stdout[-2000:]
    assert "Invalid authentication token" in out.stdout + out.stderr, out.stderr[-2000:]
    out = lan.run("x", [*submit, "echo", "ran-with-token"], env=env)
    assert out.returncode == 0 and "ran-with-token" in out.stdout, out.stderr[-2000:]
    listed = lan.run(
        "hd", [BIN / "ray", "job", "list", f"--address=http://{hd}:{DASHBOARD}"], env=env
    )
    assert listed.returncode == 0 and "ran-with-token" in listed.stdout, listed.stderr
    assert "ran-from-outsider" not in listed.stdout, "the refused job was recorded"
    for how, proc in joins.items():
        assert proc.wait(120) != 0, f"ray start with {how} token joined"
        text = (tmp / f"x-{how}.log").read_text()
        assert "InvalidAuthToken" in text, text[-2000:]  # refused by the GCS, not unreachable
    assert lan.ip["x"] not in {s["ip"] for s in watch.nodes_seen().values()}, watch.nodes_seen()
    assert sorted(watch.alive()) == sorted(lan.ip[h] for h in ("hd", "w1", "w2"))
    assert not lan.pids("x"), "the refused `ray start` left processes on the outsider host"

    # (b) what the head host binds to 127.0.0.1 cannot be reached from the other hosts
    for other in ("w1", "w2", "x"):
        for port in (MLFLOW, OPTUNA):
            assert not lan.reachable(other, hd, port), (other, port)
        # the control: the cluster's own ports on the LAN address (token-protected) accept
        assert lan.reachable(other, hd, GCS) and lan.reachable(other, hd, DASHBOARD), other
    for port in (MLFLOW, OPTUNA):  # and they are up, on the head host itself
        assert lan.reachable("hd", "127.0.0.1", port), port


def test_sweep_survives_a_dead_and_a_partitioned_host(cluster, lan, tiny_data_root):
    tmp, env, watch = cluster["tmp"], cluster["env"], cluster["watch"]
    ip = lan.ip
    head_id = watch.alive()[ip["hd"]]
    uri = f"http://127.0.0.1:{MLFLOW}"  # the head host's loopback
    cmd = sweep_cmd(NAME, tmp, tiny_data_root, uri, GCS)
    cmd[cmd.index("--ray-address") + 1] = f"{ip['hd']}:{GCS}"
    cmd += ["--no-asha", "--epochs", str(EPOCHS), "--lrs", LRS, "--cpus-per-trial", "1"]
    log = tmp / "driver.log"
    t_start = time.time()
    driver = lan.popen("hd", cmd, log, env=env, cwd=REPO)
    exp = tmp / "ray" / NAME

    def running_on(host: str, min_epoch: int):
        for folder, rows in trial_results(exp).items():
            last = rows[-1] if rows else {}
            if last.get("node_ip") == ip[host] and min_epoch <= last["epoch"] < EPOCHS:
                return folder, last
        return None

    # (a) worker 1 dies: every process of the host at once
    a, a_last = wait_for(lambda: running_on("w1", 2), 300, "a trial on w1 at epoch 2", driver)
    wait_for(lambda: running_on("w2", 1), 120, "a trial on w2", driver)
    lan.kill("w1")
    # Fault times are taken once the fault is in place: a report the host made while the
    # command ran may still arrive (a CI run got one from w2 stamped after a t_cut taken
    # just before `ip link`), and is no result from a dead host.
    t_kill = time.time()
    wait_for(lambda: watch.dead_at(ip["w1"]), DEAD_S + SLACK_S, "Ray to declare w1 dead")
    detect_kill = watch.dead_at(ip["w1"]) - t_kill

    # (b) worker 2's cable is cut while its trial runs, past Ray's timeout, then restored
    b, b_last = wait_for(lambda: running_on("w2", 1), 60, "the trial on w2", driver)
    lan.cut("w2")
    t_cut = time.time()
    wait_for(lambda: watch.dead_at(ip["w2"]), SILENT_S + SLACK_S, "Ray to declare w2 dead")
    detect_cut = watch.dead_at(ip["w2"]) - t_cut
    time.sleep(max(0.0, t_cut + CUT_S - time.time()))
    # The partitioned trial's process does not know: it trains on, and its next report
    # uploads a checkpoint to the shared storage (Ray has no fencing of a lost node).
    orphan = {c.name: c.stat().st_mtime for c in (exp / b).glob("checkpoint_*")}
    orphan = {n: t for n, t in orphan.items() if t > t_cut}
    raylet = [p for p in map(psutil.Process, lan.pids("w2")) if p.name() == "raylet"]
    assert raylet, "a partitioned host keeps running (only its cable is out)"
    lan.restore("w2")
    t_back = time.time()
    # Back on the LAN, w2's raylet learns it was declared dead and exits; `ray start
    # --block` (the role's process: a container's PID 1) then ends the rest of the node.
    wait_for(lambda: exited(raylet[0]), 60, "w2's raylet to exit once back")
    raylet_exit_s = time.time() - t_back
    wait_for(lambda: not lan.pids("w2"), 60, "w2's Ray node to end itself once back")
    gone_after_restore = time.time() - t_back
    w2_exit = cluster["procs"]["w2"].wait(10)  # the ray-worker role: a container's exit code
    finish(driver, log)
    sweep_s = time.time() - t_start

    # every trial finished; nothing lost or duplicated in the tables, MLflow, Optuna
    trials, _ = lan.call("hd", check_nothing_lost, tmp, uri, NAME, 3, epochs=EPOCHS)
    results = trial_results(exp)
    assert len(results) == 3, sorted(results)
    for rows in results.values():
        # no result after a fault came from the host it took away
        assert not [r for r in rows if r["timestamp"] > t_kill and r["node_ip"] == ip["w1"]]
        assert not [r for r in rows if r["timestamp"] > t_cut and r["node_ip"] == ip["w2"]]
    restart_s, run_twice = {}, {}
    for folder, last, t_fault, host in ((a, a_last, t_kill, "w1"), (b, b_last, t_cut, "w2")):
        rows = results[folder]
        assert restored(rows), f"the trial on {host} restarted from its checkpoint"
        before = [r for r in rows if r["timestamp"] <= t_fault]
        after = [r for r in rows if r["timestamp"] > t_fault]
        assert {r["node_ip"] for r in before} == {ip[host]}, before
        assert {r["node_ip"] for r in after} == {ip["hd"]}, "it moved to the host left"
        assert {r["node_id"] for r in after} == {head_id}
        # It goes on after the last epoch whose checkpoint Tune had committed. Tune takes a
        # trial's result, then asks the trial for the checkpoint (a second call): a fault
        # in between loses that one checkpoint, and the epoch runs again. Tune's
        # result.json then lists it twice (epochs.parquet and MLflow once, checked
        # above); the resume being bit-identical, with the same numbers.
        k, j = before[-1]["epoch"], after[0]["epoch"]
        assert k >= last["epoch"] and j in (k, k + 1), (host, k, j)
        assert [r["epoch"] for r in rows] == [*range(1, k + 1), *range(j, EPOCHS + 1)]
        if j == k:
            run_twice[host] = k
            for m in ("train_loss", "val_acc"):
                assert before[-1][m] == after[0][m], (host, k, m)
        restart_s[host] = after[0]["timestamp"] - t_fault
    # the restarted trial's own checkpoints come with its first result, or later
    orphan = sorted(n for n, t in orphan.items() if t < t_cut + restart_s["w2"])
    (c,) = set(results) - {a, b}
    assert [r["epoch"] for r in results[c]] == list(range(1, EPOCHS + 1))
    assert {r["node_ip"] for r in results[c]} == {ip["hd"]} and not restored(results[c])
    # trials.parquet says where each trial ended: the head, the one host left
    assert set(trials["node_ip"]) == {ip["hd"]} and set(trials["node_id"]) == {head_id}
    # Ray declared dead only the two hosts the faults took; no other node ever joined
    dead = sorted(s["ip"] for s in watch.nodes_seen().values() if "dead_at" in s)
    assert dead == [ip["w1"], ip["w2"]], watch.nodes_seen()
    assert len(watch.nodes_seen()) == 3, watch.nodes_seen()
    assert detect_kill <= DEAD_S + SLACK_S and detect_cut <= SILENT_S + SLACK_S

    figures = {
        "detect_dead_host_s": round(detect_kill, 1),
        "detect_partitioned_host_s": round(detect_cut, 1),
        "expected_s": {"dead": DEAD_S, "partitioned": SILENT_S},
        "cut_s": CUT_S,
        "restart_s": {h: round(s, 1) for h, s in restart_s.items()},
        "epoch_run_twice": run_twice,
        "checkpoints_written_by_the_partitioned_host_while_cut": orphan,
        "partitioned_raylet_exits_after_restore_s": round(raylet_exit_s, 1),
        "partitioned_node_gone_after_restore_s": round(gone_after_restore, 1),
        "partitioned_node_exit_code": w2_exit,
        "sweep_s": round(sweep_s, 1),
    }
    print(f"\nmultihost figures: {json.dumps(figures)}")
    report(
        fault="worker host killed, then another worker host partitioned (network namespaces)",
        trials=len(trials),
        rows_lost=0,
        **figures,
        note="restart_s: fault to the trial's first result on the head (includes waiting "
        "for the head's CPU and one epoch)",
    )
