"""MLflow on PostgreSQL: a real PostgreSQL server (Debian's package) with an ``mlflow
server`` on it, the smoke sweep logged there, and the runs checked both through MLflow and
in PostgreSQL's own tables. SQLite stays the embedded default; this only proves that a
production backend works end to end and that its password leaks nowhere."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import assert_history_matches, free_port, stop_mlflow
from mlflow.tracking import MlflowClient
from test_sweep import runs_named, sweep_args

from sweeps.mnist_optimizers import SWEEP
from sweeps.results import load_results
from sweeps.runner import main


def _pg_bin() -> Path:
    """``$PG_BIN``, else the newest Debian ``/usr/lib/postgresql/<major>/bin`` (bookworm
    has 15, trixie 17); a CI machine gets it with ``apt-get install -y postgresql``."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "postgres"  # the system user: postgres refuses to run as root


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, PG_USER, PG_USER)


def _as_postgres(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    """Run a PostgreSQL binary as the ``postgres`` system user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER, "--", *cmd]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    if out.returncode:
        log = cwd / "log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"{cmd} exited {out.returncode}:\n{out.stdout}{out.stderr}{tail}")
    return out


def _need_postgres() -> None:
    """Skip outside CI when PostgreSQL is not installed; in CI that is a failure."""
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / b).exists()]
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser")
    if os.geteuid() == 0 and not missing:
        try:
            import pwd

            pwd.getpwnam(PG_USER)
        except KeyError:
            missing.append(f"system user {PG_USER!r}")
    if not missing:
        return
    msg = f"PostgreSQL not usable: {', '.join(missing)} missing in {PG_BIN} (PG_BIN)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg}; CI must run `apt-get install -y postgresql`")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL on 127.0.0.1:<free port> (socket in its own temp dir), with a
    role ``mlflow`` (random password, scram-sha-256) owning a database ``mlflow``.
    Yields ``(host, port, password)``; stopped and removed at teardown."""
    _need_postgres()
    import psycopg2

    # Not under pytest's tmp dir: that is root's, mode 700, and postgres cannot enter it.
    root = Path(tempfile.mkdtemp(prefix="pg_mlflow_"))
    _give_to_postgres(root)
    data, port = root / "data", free_port()
    su_pw, pw = secrets.token_hex(16), secrets.token_hex(16)
    pwfile = root / "pwfile"
    pwfile.write_text(su_pw + "\n")
    _give_to_postgres(pwfile)
    started = False
    try:
        _as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            cwd=root,
            timeout=300,
        )
        pwfile.unlink()
        started = True  # from here on teardown stops it, even if `start` fails half-way
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "300", "-D", str(data)]
            + ["-l", str(root / "log"), "-o", opts],
            cwd=root,
            timeout=330,
        )
        su = psycopg2.connect(
            host="127.0.0.1", port=port, user="postgres", password=su_pw, dbname="postgres"
        )
        su.autocommit = True
        with su.cursor() as cur:
            cur.execute("CREATE ROLE mlflow LOGIN PASSWORD %s", (pw,))
            cur.execute("CREATE DATABASE mlflow OWNER mlflow")
        su.close()
        yield "127.0.0.1", port, pw
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                _as_postgres(
                    [str(PG_BIN / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(data)],
                    cwd=root,
                    timeout=120,
                )
        shutil.rmtree(root, ignore_errors=True)


def start_mlflow_server(backend_uri: str, root: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on ``backend_uri`` bound to 127.0.0.1:``port``, in its own process
    group; like conftest.start_mlflow, with a generous start-up wait (the first start
    creates MLflow's schema in PostgreSQL)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    log = open(root / "log", "a")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server"]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        + ["--backend-store-uri", backend_uri]
        + ["--artifacts-destination", str(root / "artifacts")],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600  # a start-up bound, not an assertion on speed
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((root / "log").read_text()[-3000:]) from None
            time.sleep(0.5)
    stop_mlflow(proc)
    raise RuntimeError("mlflow server did not start:\n" + (root / "log").read_text()[-3000:])


@pytest.fixture(scope="module")
def mlflow_on_postgres(postgres, tmp_path_factory):
    """An ``mlflow server`` whose backend store is the ``postgres`` fixture's database.
    Yields ``(tracking_uri, psycopg2 connect kwargs, password)``."""
    host, pg_port, pw = postgres
    port = free_port()
    # "+psycopg2": SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which we lack.
    proc = start_mlflow_server(
        f"postgresql+psycopg2://mlflow:{pw}@{host}:{pg_port}/mlflow",
        tmp_path_factory.mktemp("mlflow_pg"),
        port,
    )
    try:
        conn = {"host": host, "port": pg_port, "user": "mlflow", "password": pw, "dbname": "mlflow"}
        yield f"http://127.0.0.1:{port}", conn, pw
    finally:
        stop_mlflow(proc)


def _files_containing(folder: Path, needle: str) -> list[str]:
    raw = needle.encode()
    return [str(p) for p in folder.rglob("*") if p.is_file() and raw in p.read_bytes()]


@pytest.mark.slow
def test_smoke_sweep_on_mlflow_with_postgres(
    ray_local, mlflow_on_postgres, tiny_data_root, tmp_path
):
    import psycopg2

    uri, pg, pw = mlflow_on_postgres
    assert main(SWEEP, sweep_args(tiny_data_root, uri, tmp_path, "pg")) == 0
    tables = load_results("mnist_optimizers", tmp_path / "res")
    trials, epochs = tables["trials"], tables["epochs"]
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}

    # Through MLflow: one finished parent, one finished child per trial, metrics = Parquet.
    client = MlflowClient(uri)
    parent, children = runs_named(client, "pg")
    assert parent is not None and parent.info.status == "FINISHED"
    assert {c.info.run_id for c in children} == set(trials["mlflow_run_id"])
    assert len(children) == len(trials)
    history_rows = {}
    for child in children:
        rid = child.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        row = trials[trials["mlflow_run_id"] == rid].iloc[0]
        ep = epochs[epochs["mlflow_run_id"] == rid].sort_values("epoch")
        assert_history_matches(client, rid, ep)
        assert math.isclose(child.data.metrics["test_acc"], row["test_acc"])
        assert child.data.params["model"] == row["model"]
        assert float(child.data.params["lr"]) == row["lr"]
        assert {"learning_curves.png", "confusion_matrix.png"} <= {
            a.path for a in client.list_artifacts(rid)
        }
        history_rows[rid] = sum(
            len(client.get_metric_history(rid, k)) for k in client.get_run(rid).data.metrics
        )
    parent_arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"table1.parquet", "trials.parquet", "heatmap_test_acc.png"} <= parent_arts

    # In PostgreSQL itself: the same runs, statuses, parent tags and metric rows, so this
    # cannot pass against some other (SQLite, file) store by accident.
    exp = client.get_experiment_by_name("mnist_optimizers")
    seen = client.search_runs([exp.experiment_id], max_results=1000)
    with psycopg2.connect(**pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT version()")
        assert cur.fetchone()[0].startswith("PostgreSQL")
        cur.execute(
            "SELECT run_uuid, status FROM runs WHERE experiment_id = %s",
            (int(exp.experiment_id),),
        )
        in_pg = dict(cur.fetchall())
        assert in_pg == {r.info.run_id: r.info.status for r in seen}
        assert set(in_pg) == {parent.info.run_id, *history_rows}
        cur.execute(
            "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = %s",
            (parent.info.run_id,),
        )
        assert {r for (r,) in cur.fetchall()} == set(history_rows)
        cur.execute(
            "SELECT run_uuid, count(*) FROM metrics WHERE run_uuid = ANY(%s) GROUP BY run_uuid",
            (list(history_rows),),
        )
        assert dict(cur.fetchall()) == history_rows
        cur.execute(
            "SELECT run_uuid, step, value FROM metrics WHERE key = 'val_acc'"
            " AND run_uuid = ANY(%s)",
            (list(history_rows),),
        )
        pg_val = sorted(cur.fetchall())
    # each run's last point is the selected epoch's, one step after its last epoch
    last = epochs.groupby("mlflow_run_id")["epoch"].max()
    assert sorted((r, s) for r, s, _ in pg_val if s > last[r]) == sorted(
        (r, e + 1) for r, e in last.items()
    )
    pg_val = [(r, s, v) for r, s, v in pg_val if s <= last[r]]
    parquet_val = sorted(
        zip(epochs["mlflow_run_id"], epochs["epoch"], epochs["val_acc"], strict=True)
    )
    assert [(r, s) for r, s, _ in pg_val] == [(r, s) for r, s, _ in parquet_val]
    assert [v for *_, v in pg_val] == pytest.approx([v for *_, v in parquet_val], rel=1e-12)

    # The database password is only in the server's backend URI: nowhere in the results,
    # Tune's storage, or any run's params and tags.
    assert _files_containing(tmp_path / "res", pw) == []
    assert _files_containing(tmp_path / "ray", pw) == []
    for run in seen:
        logged = {**run.data.params, **run.data.tags}
        assert not [k for k, v in logged.items() if pw in v], run.info.run_id
