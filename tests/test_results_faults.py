"""Result writes under faults, with real processes: a writer SIGKILLed mid-write, a publish
killed midway, and two runs of one sweep publishing at the same time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeps.results import (
    PUBLISHED,
    load_results,
    publish,
    read_table,
    run_folder,
    write_parquet,
    write_text,
)

REPO = Path(__file__).resolve().parents[1]
SWEEP = "mnist_optimizers"

pytestmark = [
    pytest.mark.faults,
]

# Writes ~64 MB of Parquet (about 0.2 s), long enough to be killed halfway through.
WRITE_BIG = """
import sys
from pathlib import Path
import numpy as np, pandas as pd
from sweeps.results import write_parquet
rng = np.random.default_rng(0)
big = pd.DataFrame({"x": rng.random(4_000_000), "y": rng.random(4_000_000)})
print("ready", flush=True)
write_parquet(big, Path(sys.argv[1]), {"run": "big"})
"""

# A writer that stays mid-write (alive, temp file open) until it is killed.
HOLD_TEMP = """
import sys, time
from pathlib import Path
from sweeps.results import _atomic
_atomic(Path(sys.argv[1]), lambda tmp: (Path(tmp).write_text("partial"), time.sleep(120)))
"""

# One run of a sweep: rewrite its own complete set, publish it, `rounds` times. Every file
# names the run; the run given --extra has two files the other lacks, so leftovers show.
PUBLISHER = """
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd
from sweeps.results import publish, run_folder, write_parquet, write_text
sweep_dir, name, barrier = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rounds = int(sys.argv[4])
extra = "--extra" in sys.argv
run_dir = run_folder(sweep_dir, name)
(barrier / f"ready-{name}").touch()
while not (barrier / "go").exists():
    time.sleep(0.001)
rows = 300_000
for i in range(rounds):
    x = np.random.default_rng(i).random(rows)
    trials = pd.DataFrame({"run": [name] * rows, "round": i, "x": x})
    write_parquet(trials, run_dir / "trials.parquet", {"run": name})
    write_parquet(pd.DataFrame({"run": [name], "round": [i]}), run_dir / "table1.parquet", {})
    write_text(f"# table1 of {name}, round {i}\\n", run_dir / "table1.md")
    if extra:
        write_parquet(pd.DataFrame({"run": [name]}), run_dir / "table2.parquet", {})
        write_text(f"# notes of {name}\\n", run_dir / "notes.md")
    write_text(json.dumps({"run": name, "round": i}), run_dir / "provenance.json")
    publish(run_dir, sweep_dir)
"""

PUBLISH = """
import sys
from pathlib import Path
from sweeps.results import publish
publish(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def python(code: str, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, **kw)


def wait_for(cond, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.0005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def temps(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


def temp_of(folder: Path, target: str, min_bytes: int = 0) -> Path | None:
    """A temp file being written for ``target`` that has grown to ``min_bytes``."""
    for tmp in folder.glob(f".{target}.*.tmp"):
        try:
            if tmp.stat().st_size >= min_bytes:
                return tmp
        except FileNotFoundError:  # renamed into place between glob and stat
            pass
    return None


def top_level(sweep_dir: Path) -> set[str]:
    return {p.name for p in sweep_dir.iterdir() if p.is_file() and not p.name.startswith(".")}


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped: a zombie still answers os.kill(pid, 0)


def table(run: str) -> pd.DataFrame:
    return pd.DataFrame({"run": [run] * 3, "x": [1.0, 2.0, 3.0]})


def test_sigkill_mid_write_keeps_old_file_and_next_write_removes_its_temp(tmp_path):
    target = tmp_path / "trials.parquet"
    old = table("old")
    write_parquet(old, target, {"run": "old"})

    proc = python(WRITE_BIG, target, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        stale = wait_for(lambda: temp_of(tmp_path, target.name, 1 << 20), "a growing temp file")
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert stale.exists(), "the kill landed after the write had finished; nothing was tested"
    assert f".{proc.pid}." in stale.name

    for engine in ("pyarrow", "fastparquet"):
        got = read_table(target, engine)
        assert got.to_dict("list") == old.to_dict("list"), engine

    new = table("new")
    write_parquet(new, target, {"run": "new"})
    assert not stale.exists()
    assert temps(tmp_path) == []
    assert pd.read_parquet(target).to_dict("list") == new.to_dict("list")


def test_cleanup_keeps_live_writers_and_other_hosts_temps(tmp_path):
    live = python(HOLD_TEMP, tmp_path / "live.md")
    dead = python(HOLD_TEMP, tmp_path / "dead.md")
    try:
        live_tmp = wait_for(lambda: temp_of(tmp_path, "live.md"), "the live writer's temp file")
        dead_tmp = wait_for(lambda: temp_of(tmp_path, "dead.md"), "the doomed writer's temp file")
        kill(dead)
        # The same dead PID, but written on another machine sharing the folder (NFS).
        _, host, pid, rand, _ = dead_tmp.name[1:].rsplit(".", 4)
        foreign = tmp_path / f".dead.md.not-{host}.{pid}.{rand}.tmp"
        foreign.write_text("partial")

        write_text("done\n", tmp_path / "other.md")

        assert not dead_tmp.exists()
        assert live_tmp.exists() and live_tmp.read_text() == "partial"
        assert foreign.exists()
        assert live.poll() is None
    finally:
        kill(live)
        kill(dead)


def test_concurrent_publishers_leave_exactly_one_runs_set(tmp_path):
    sweep_dir = tmp_path / SWEEP
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    base = {"trials.parquet", "table1.parquet", "table1.md", "provenance.json"}
    files = {"alpha": base | {"table2.parquet", "notes.md"}, "bravo": base}
    procs = {
        name: python(PUBLISHER, sweep_dir, name, barrier, 20, *extra, stderr=subprocess.PIPE)
        for name, extra in (("alpha", ["--extra"]), ("bravo", []))
    }
    try:
        wait_for(lambda: all((barrier / f"ready-{n}").exists() for n in procs), "both ready")
        (barrier / "go").touch()
        # Read the published set while both publish: every read must be one run's set.
        reads, seen = 0, set()
        while any(p.poll() is None for p in procs.values()):
            if not (sweep_dir / PUBLISHED).exists():
                time.sleep(0.001)
                continue
            tables = load_results(SWEEP, tmp_path)
            runs = set().union(*(set(df["run"].unique()) for df in tables.values()))
            assert len(runs) == 1, f"read {sorted(tables)} mixing runs {sorted(runs)}"
            (run,) = runs
            assert set(tables) == {f[:-8] for f in files[run] if f.endswith(".parquet")}
            reads, seen = reads + 1, seen | runs
    finally:
        for p in procs.values():
            p.wait(timeout=120)
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}: {p.stderr.read().decode()[-2000:]}"
    assert reads > 0

    def runs_named(path: Path) -> set[str]:
        if path.suffix == ".parquet":
            return set(pd.read_parquet(path)["run"].unique())
        return {name for name in files if name in path.read_text()}

    record = json.loads((sweep_dir / PUBLISHED).read_text())
    run = record["run_name"]
    assert record == {"run_name": run, "files": sorted(files[run])}
    assert top_level(sweep_dir) == files[run]
    for name in files[run]:
        assert runs_named(sweep_dir / name) == {run}, name
    for name in files:
        run_dir = run_folder(sweep_dir, name)
        assert top_level(run_dir) == files[name]
        for f in files[name]:
            assert runs_named(run_dir / f) == {name}, (name, f)
    assert temps(tmp_path) == []
    print(f"{reads} consistent reads while publishing, runs seen: {sorted(seen)}, won: {run}")


def test_publishing_a_smaller_set_removes_the_leftovers(tmp_path):
    sweep_dir = tmp_path / SWEEP
    big, small = run_folder(sweep_dir, "big"), run_folder(sweep_dir, "small")
    for stem in ("trials", "table1"):
        write_parquet(table("big"), big / f"{stem}.parquet", {})
    write_text("# table1 of big\n", big / "table1.md")
    write_text("not really a png\n", big / "heatmap_test_acc.png")
    publish(big, sweep_dir)
    assert len(top_level(sweep_dir)) == 4

    for stem in ("trials", "table1"):
        write_parquet(table("small"), small / f"{stem}.parquet", {})
    published = publish(small, sweep_dir)

    assert published == [sweep_dir / "table1.parquet", sweep_dir / "trials.parquet"]
    assert top_level(sweep_dir) == {"trials.parquet", "table1.parquet"}
    record = json.loads((sweep_dir / PUBLISHED).read_text())
    assert record == {"run_name": "small", "files": ["table1.parquet", "trials.parquet"]}
    assert {set(df["run"]).pop() for df in load_results(SWEEP, tmp_path).values()} == {"small"}
    # The replaced run's own folder is untouched and still readable by name.
    assert len(top_level(big)) == 4
    assert set(load_results(SWEEP, tmp_path, run="big")["table1"]["run"]) == {"big"}


def test_first_publish_replaces_unrecorded_files(tmp_path):
    """Results written before publishing existed have no record; they all count as the old set."""
    sweep_dir = tmp_path / SWEEP
    write_parquet(table("legacy"), sweep_dir / "trials.parquet", {})
    write_text("# a table the new run no longer makes\n", sweep_dir / "table9.md")
    run_dir = run_folder(sweep_dir, "fresh")
    write_parquet(table("fresh"), run_dir / "trials.parquet", {})

    publish(run_dir, sweep_dir)

    assert top_level(sweep_dir) == {"trials.parquet"}
    assert set(load_results(SWEEP, tmp_path)["trials"]["run"]) == {"fresh"}
    assert top_level(run_dir) == {"trials.parquet"}


def test_publish_killed_midway_is_refused_by_readers_and_repaired_by_the_next(tmp_path):
    sweep_dir = tmp_path / SWEEP
    old = run_folder(sweep_dir, "old")
    for stem in ("trials", "table1"):
        write_parquet(table("old"), old / f"{stem}.parquet", {})
    write_text("# only the old run has this\n", old / "table1.md")
    publish(old, sweep_dir)

    # Copied in name order: a_notes.md and trials.parquet land before the 64 MB file.
    killed = run_folder(sweep_dir, "killed")
    write_text("# notes of killed\n", killed / "a_notes.md")
    write_parquet(table("killed"), killed / "trials.parquet", {})
    (killed / "z_big.bin").write_bytes(np.random.default_rng(0).bytes(64 << 20))
    proc = python(PUBLISH, killed, sweep_dir)
    try:
        wait_for(lambda: temp_of(sweep_dir, "z_big.bin"), "the publish to reach the big file")
    finally:
        kill(proc)
    record = json.loads((sweep_dir / PUBLISHED).read_text())
    assert record.get("in_progress") and record["run_name"] == "killed", record
    assert (sweep_dir / "a_notes.md").exists()

    with pytest.raises(RuntimeError, match="half-published"):
        load_results(SWEEP, tmp_path)
    assert set(load_results(SWEEP, tmp_path, run="old")["trials"]["run"]) == {"old"}

    # The dead publisher's lock went with its process; the next publish runs and cleans up.
    new = run_folder(sweep_dir, "new")
    write_parquet(table("new"), new / "table1.parquet", {})
    publish(new, sweep_dir)
    assert top_level(sweep_dir) == {"table1.parquet"}
    assert json.loads((sweep_dir / PUBLISHED).read_text()) == {
        "run_name": "new",
        "files": ["table1.parquet"],
    }
    assert set(load_results(SWEEP, tmp_path)["table1"]["run"]) == {"new"}
    assert temps(tmp_path) == []


def test_writes_reach_the_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    """A rename can reach the disk before the data it names: after a power loss the table
    would be there, empty. The temp file is fsynced before the rename, the folder after."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "t.md"
    write_text("hello", target)
    kinds = [k for k, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert Path(events[0][1]).parent == tmp_path and events[0][1].endswith(".tmp")
    assert events[2][1] == str(tmp_path)
    assert target.read_text() == "hello"
