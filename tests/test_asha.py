"""ResumableASHA: rungs survive a new scheduler object (a restarted driver)."""

from __future__ import annotations

from types import SimpleNamespace

from sweeps.asha import ResumableASHA


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


def test_decisions_record_the_cutoff_each_trial_was_judged_against(tmp_path):
    s = scheduler(tmp_path / "asha.json")
    t = trials(s, 3)
    assert s.on_trial_result(None, t[0], {"epoch": 1, "val_acc": 0.5}) == s.CONTINUE
    assert s.on_trial_result(None, t[1], {"epoch": 1, "val_acc": 0.7}) == s.CONTINUE
    assert s.on_trial_result(None, t[2], {"epoch": 1, "val_acc": 0.4}) == s.STOP
    s.on_trial_result(None, t[1], {"epoch": 2, "val_acc": 0.8})  # between rungs: not judged
    s.on_trial_result(None, t[1], {"epoch": 9, "val_acc": 0.9})  # max_t: ends, not judged
    got = [
        (d["trial_id"], d["rung"], d["val_acc"], d["records"], d["decision"]) for d in s.decisions()
    ]
    assert got == [
        ("t0", 1, 0.5, 0, "continue"),  # an empty rung cannot judge
        ("t1", 1, 0.7, 1, "continue"),
        ("t2", 1, 0.4, 2, "stop"),
    ]
    cut = [d["cutoff"] for d in s.decisions()]
    assert cut[0] is None  # nothing to compare against
    assert cut[1] == 0.5
    # the 2/3 percentile of {0.5, 0.7}, which 0.4 is below
    assert abs(cut[2] - (0.5 + 0.2 * 2 / 3)) < 1e-12
    again = scheduler(tmp_path / "asha.json")  # a restarted driver keeps them
    assert again.decisions() == s.decisions()
