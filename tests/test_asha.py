"""ResumableASHA: rungs survive a new scheduler object (a restarted driver), and trials
that passed a rung before it could judge them are stopped once it can."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sweeps.resume import ResumableASHA


def scheduler(path, revisit=True) -> ResumableASHA:
    s = ResumableASHA(
        path, revisit=revisit, time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3
    )
    s.set_search_properties("val_acc", "max")
    return s


def trials(s, n):
    ts = [SimpleNamespace(trial_id=f"t{i}") for i in range(n)]
    for t in ts:
        s.on_trial_add(None, t)
    return ts


@pytest.mark.parametrize(("revisit", "t0_goes_on"), [(True, False), (False, True)])
def test_a_trial_that_met_an_empty_rung_is_judged_later(tmp_path, revisit, t0_goes_on):
    s = scheduler(tmp_path / "asha.json", revisit)
    t = trials(s, 3)
    assert s.on_trial_result(None, t[0], {"epoch": 1, "val_acc": 0.2}) == s.CONTINUE
    assert s.on_trial_result(None, t[1], {"epoch": 1, "val_acc": 0.9}) == s.CONTINUE
    assert s.on_trial_result(None, t[2], {"epoch": 1, "val_acc": 0.8}) == s.CONTINUE
    # t0's rung-1 record (0.2) is now below the rung's cutoff of {0.2, 0.9, 0.8}
    got = s.on_trial_result(None, t[0], {"epoch": 2, "val_acc": 0.3})
    assert got == (s.CONTINUE if t0_goes_on else s.STOP)
    assert s.on_trial_result(None, t[1], {"epoch": 2, "val_acc": 0.95}) == s.CONTINUE


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
