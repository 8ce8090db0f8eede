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


def cell(i: int, model: str = "resnet18", lr: float = 0.001, **kw):
    config = {"model": model, "optimizer": "sgd", "lr": lr, **kw}
    return SimpleNamespace(trial_id=f"t{i}", config=config)


def test_a_published_cell_is_never_stopped_but_still_judged(tmp_path):
    """A cell the paper reports trains as the paper trained it: where ASHA would stop it,
    the decision is logged as kept; the exploration cell with the same value is stopped."""
    s = ResumableASHA(
        tmp_path / "asha.json",
        protected=frozenset({"resnet18|sgd|0.001"}),
        time_attr="epoch",
        max_t=9,
        grace_period=1,
        reduction_factor=3,
    )
    s.set_search_properties("val_acc", "max")
    good, published, explore = cell(0, lr=0.01), cell(1, lr=0.001), cell(2, lr=0.1)
    for t in (good, published, explore):
        s.on_trial_add(None, t)
    assert s.on_trial_result(None, good, {"epoch": 1, "val_acc": 0.9}) == s.CONTINUE
    assert s.on_trial_result(None, published, {"epoch": 1, "val_acc": 0.2}) == s.CONTINUE
    assert s.on_trial_result(None, explore, {"epoch": 1, "val_acc": 0.2}) == s.STOP
    assert [d["decision"] for d in s.decisions()] == ["continue", "kept (published)", "stop"]
    rung1 = [r for r in s.rungs() if r["milestone"] == 1][0]
    assert rung1["recorded"] == {"t0": 0.9, "t1": 0.2, "t2": 0.2}  # all three are records
    assert s._num_stopped == 1


def test_rows_are_ranked_only_against_their_own_dataset(tmp_path):
    """A weak CIFAR-10 row is not stopped for being below MNIST rows; a weak MNIST row is."""
    groups = {"a": "mnist", "b": "mnist", "c": "cifar10", "d": "mnist"}
    kw = dict(groups=groups, time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3)
    s = ResumableASHA(tmp_path / "asha.json", **kw)
    s.set_search_properties("val_acc", "max")
    rows = {k: SimpleNamespace(trial_id=k, config={"label": k}) for k in groups}
    for t in rows.values():
        s.on_trial_add(None, t)
    assert s.on_trial_result(None, rows["a"], {"epoch": 1, "val_acc": 0.50}) == s.CONTINUE
    assert s.on_trial_result(None, rows["b"], {"epoch": 1, "val_acc": 0.98}) == s.CONTINUE
    assert s.on_trial_result(None, rows["c"], {"epoch": 1, "val_acc": 0.40}) == s.CONTINUE
    assert s.on_trial_result(None, rows["d"], {"epoch": 1, "val_acc": 0.45}) == s.STOP
    by_group = {(r["group"], r["milestone"]): r["recorded"] for r in s.rungs()}
    assert by_group[("cifar10", 1)] == {"c": 0.40}
    assert set(by_group[("mnist", 1)]) == {"a", "b", "d"}
    again = ResumableASHA(tmp_path / "asha.json", **kw)  # a restarted driver: groups kept
    assert {(r["group"], r["milestone"]): r["recorded"] for r in again.rungs()} == by_group
