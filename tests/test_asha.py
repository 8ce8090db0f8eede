"""ResumableASHA: rungs survive a new scheduler object (a restarted driver)."""

from __future__ import annotations

from types import SimpleNamespace

from sweeps.resume import ResumableASHA


def scheduler(path) -> ResumableASHA:
    s = ResumableASHA(path, time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3)
    s.set_search_properties("val_acc", "max")
    return s


def trials(s, n):
    ts = [SimpleNamespace(trial_id=f"t{i}") for i in range(n)]
    for t in ts:
        s.on_trial_add(None, t)
    return ts


def test_rungs_survive_a_new_scheduler(tmp_path):
    s = scheduler(tmp_path / "asha.json")
    t = trials(s, 2)
    s.on_trial_result(None, t[0], {"epoch": 1, "val_acc": 0.5})
    s.on_trial_result(None, t[1], {"epoch": 1, "val_acc": 0.7})
    again = scheduler(tmp_path / "asha.json")
    trials(again, 2)
    rung1 = [r for r in again.rungs() if r["milestone"] == 1][0]
    assert rung1["recorded"] == {"t0": 0.5, "t1": 0.7}
    # a new trial below the restored records' cutoff is stopped at once
    new = SimpleNamespace(trial_id="t9")
    again.on_trial_add(None, new)
    assert again.on_trial_result(None, new, {"epoch": 1, "val_acc": 0.1}) == again.STOP
