"""The run record: ``<storage>/.cnnsweep/<run>/cnnsweep.json``, the one file that says
what a sweep run is (its MLflow parent run, the flags it was asked for, its data) and how
it is (running with which driver, finished, failed, died).

``--resume`` reads it to continue the same MLflow parent run with the same children and
to refuse flags or data that would make it a different sweep; ``cnnsweep runs`` lists
it; a new sweep closes the runs whose driver died (the MLflow UI would otherwise show
them RUNNING forever). Light: no Ray, no MLflow import (a client is passed in).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from sweeps.results import write_text
from sweeps.settings import STATE_FOLDER
from trainables.config import ConfigError

RECORD = "cnnsweep.json"


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (a kill mid-write leaves the previous file)."""
    write_text(json.dumps(obj, indent=1, default=str), Path(path))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def start(
    state_dir: Path,
    *,
    sweep: str,
    run_name: str,
    mlflow: dict,
    data_sha256: str,
    fingerprint: dict,
    started_utc: str,
) -> None:
    """The record of a new run, written before its first trial starts."""
    write_json(
        Path(state_dir) / RECORD,
        {
            "sweep": sweep,
            "run_name": run_name,
            "mlflow": mlflow,
            "data_sha256": data_sha256,
            "plan": json.loads(json.dumps(fingerprint, default=str)),
            "status": "running",
            "driver": driver_record(),
            "started_utc": started_utc,
        },
    )


def mark_status(state_dir: Path, status: str) -> None:
    """Record how the run is (``cnnsweep runs`` shows it): ``running`` (with the driver's
    host and pid, see :func:`driver_alive`), ``finished``, ``failed`` (trials errored) or
    ``died`` (found with a dead driver, see :func:`close_dead_runs`)."""
    path = Path(state_dir) / RECORD
    if path.exists():
        meta = json.loads(path.read_text())
        meta["status"] = status
        meta["status_utc"] = _now()
        if status == "running":
            meta["driver"] = driver_record()
        write_json(path, meta)


def _started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None if there is none."""
    try:
        import psutil  # Ray's own dependency; only needed for the liveness check

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:
        return None


def driver_record() -> dict:
    """Who runs the sweep: host, pid and the pid's start time (a reused pid has another)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": _started(pid)}


def driver_alive(meta: dict) -> bool | None:
    """Whether a ``running`` run's driver still runs: True or False on the host it ran on,
    None elsewhere (another machine's processes cannot be seen from here)."""
    driver = meta.get("driver")
    if not driver or driver.get("host") != socket.gethostname():
        return None
    started = _started(int(driver["pid"]))
    if started is None:
        return False
    return driver.get("pid_started") is None or abs(started - driver["pid_started"]) < 1.0


def records(storage: Path) -> list[tuple[Path, dict]]:
    """Every readable run record under the storage path, as (state folder, record)."""
    found = []
    for path in sorted((Path(storage) / STATE_FOLDER).glob(f"*/{RECORD}")):
        try:
            found.append((path.parent, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return found


def status(storage: Path, state: Path, meta: dict) -> str:
    """How a run is, as ``cnnsweep runs`` shows it (a dead driver's run says ``died``
    even before a new sweep closed it)."""
    exp = Path(storage) / state.name
    found = meta.get("status", "unfinished" if exp.exists() else "no Tune state")
    if found == "running":
        alive = driver_alive(meta)
        if alive is False:
            return "died"
        if alive is None and meta.get("driver"):
            return f"running on {meta['driver']['host']}"
    return found


def close_dead_runs(client, storage: Path, sweep: str, skip: Path | None = None) -> list[str]:
    """Mark the runs of ``sweep`` whose driver died (SIGKILL, OOM, a reboot: nothing
    could close them) as such: the record says ``died`` and the MLflow parent and its
    RUNNING children become KILLED, with a tag that says how to continue. ``--resume``
    sets them RUNNING again. Only drivers of this host are judged; ``skip`` is the run
    being started or resumed. Returns the names of the runs closed."""
    closed = []
    for state, meta in records(storage):
        if skip is not None and state.resolve() == Path(skip).resolve():
            continue
        if meta.get("sweep") != sweep or meta.get("status") != "running":
            continue
        if driver_alive(meta) is not False:
            continue
        hint = f"its driver died; continue it with: cnnsweep resume {sweep} --name {state.name} ..."
        if meta.get("mlflow", {}).get("parent_run_id"):
            _kill_mlflow_runs(client, meta["mlflow"], hint)
        mark_status(state, "died")
        print(f"[mlflow] run {state.name} of {sweep}: {hint}", flush=True)
        closed.append(state.name)
    return closed


def _kill_mlflow_runs(client, ids: dict, hint: str) -> None:
    parent = ids["parent_run_id"]
    children = client.search_runs(
        [ids["experiment_id"]],
        f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'RUNNING'",
    )
    for run in children:
        client.set_terminated(run.info.run_id, "KILLED")
    client.set_tag(parent, "cnnsweep.status", hint)
    if client.get_run(parent).info.status == "RUNNING":
        client.set_terminated(parent, "KILLED")


def find_run(storage: Path, sweep: str, name: str | None) -> Path:
    """The state folder of the run ``--resume`` continues: ``--name``'s, else the newest
    run of this sweep under the storage path."""

    def resumable(state: Path) -> bool:
        return (state / RECORD).exists() and (storage / state.name / "tuner.pkl").exists()

    if name:
        state = storage / STATE_FOLDER / name
        if not resumable(state):
            raise ConfigError(
                f"--resume --name {name!r}: {storage / name} holds no sweep to resume; "
                f"allowed: a --name of an earlier run under {storage} (or no --name: the newest)"
            )
        return state
    mine = [s for s, meta in records(storage) if meta.get("sweep") == sweep and resumable(s)]
    if not mine:
        raise ConfigError(
            f"--resume: no {sweep} sweep to resume under {storage}; allowed: a storage path "
            "(--storage-path / $CNNSWEEP_STORAGE_PATH) where an earlier run of it was started"
        )
    return max(mine, key=lambda s: (s / RECORD).stat().st_mtime)


def check_same_sweep(state: Path, fingerprint: dict) -> dict:
    """The record of ``state``, after checking the flags describe the same sweep."""
    saved = json.loads((state / RECORD).read_text())
    now = json.loads(json.dumps(fingerprint, default=str))
    diff = [k for k in now if saved["plan"].get(k) != now[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--resume: {k} is {now[k]!r} but the run being resumed ({state.name}) used "
            f"{saved['plan'].get(k)!r}; allowed: the flags of the original command"
        )
    return saved


def check_same_data(record: dict, data_sha256: str) -> None:
    """A resumed run must see the images it started with."""
    if record.get("data_sha256") != data_sha256:
        raise ConfigError(
            f"--resume: the data's sha256 is {data_sha256} but the run being "
            f"resumed used {record.get('data_sha256')}; allowed: the same data"
        )
