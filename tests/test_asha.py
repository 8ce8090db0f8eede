"""ResumableASHA: rungs survive a new scheduler object (a restarted driver)."""

from __future__ import annotations

from types import SimpleNamespace

from sweeps.asha import USUAL_LR, ResumableASHA, trial_order
from sweeps.sweep import cell_key


def scheduler(path, **kw) -> ResumableASHA:
    s = ResumableASHA(path, time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, **kw)
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


GRID = [
    {"model": m, "optimizer": o, "lr": lr}
    for m in ("vgg16", "googlenet", "resnet18")
    for o in ("sgd", "adam")
    for lr in (0.001, 0.01, 0.1)
]
# forward GFLOPs at 32 px (trainables.models.forward_flops)
COST = {"vgg16": 0.664, "googlenet": 0.061, "resnet18": 0.074}


def key(c):
    return (c["model"], c["optimizer"], c["lr"])


def test_trial_order_interleaves_cheap_cells_first_and_usual_lrs_first():
    order = trial_order(GRID, COST, seed=0)
    assert sorted(map(key, order)) == sorted(map(key, GRID))  # every cell, once
    # the first four: one per cheap (model, optimizer) group, each at its usual lr
    first = order[:4]
    assert {(c["model"], c["optimizer"]) for c in first} == {
        (m, o) for m in ("googlenet", "resnet18") for o in ("sgd", "adam")
    }
    assert all(c["lr"] == USUAL_LR[c["optimizer"]] for c in first)
    # VGG-16 (9x the FLOPs) after every cheap cell; Adam at 0.1 never before its group's others
    models = [c["model"] for c in order]
    assert models[-6:] == ["vgg16"] * 6
    for m in COST:
        adam = [c["lr"] for c in order if c["model"] == m and c["optimizer"] == "adam"]
        assert adam[0] == 0.001 and adam[-1] == 0.1
    # seeded: the same order for the same seed
    assert trial_order(GRID, COST, seed=0) == order


def test_trial_order_gives_every_cell_once_before_a_second_seed():
    order = trial_order(GRID, COST, seed=3, seeds=(0, 1))
    assert [c["seed"] for c in order] == [0] * 18 + [1] * 18
    assert list(map(key, order[:18])) == list(map(key, order[18:]))


def test_an_early_chance_trial_no_longer_outlives_an_empty_rung(tmp_path):
    """Replayed through the real scheduler, one slot: in Tune's grid order the chance
    trial (VGG-16/SGD) comes first and passes the empty rung 1; in trial_order's it
    comes after the cheap cells and is stopped there."""
    chance = {(m, "sgd", lr) for m in ("vgg16",) for lr in (0.001, 0.01, 0.1)}

    def replay(cells):
        s = scheduler(tmp_path / f"{len(list(tmp_path.iterdir()))}.json")
        outlived = []
        for i, c in enumerate(cells):
            t = SimpleNamespace(trial_id=f"t{i}", config=c)
            s.on_trial_add(None, t)
            acc = 0.1 if key(c) in chance else 0.9 + 0.001 * i
            if s.on_trial_result(None, t, {"epoch": 1, "val_acc": acc}) != s.STOP:
                outlived += [key(c)] if key(c) in chance else []
        return outlived

    assert replay(GRID)  # Tune's order: model outermost, VGG-16 first
    assert replay(trial_order(GRID, COST, seed=0)) == []


class Controller:
    """What Tune's controller offers a scheduler: its trials, and stopping one."""

    def __init__(self, trials):
        self.trials, self.stopped = trials, []

    def get_trials(self):
        return self.trials

    def stop_trial(self, t):
        self.stopped.append(t.trial_id)
        t.status = "TERMINATED"


def test_a_rung_waits_for_its_quorum_then_judges_everyone_against_it(tmp_path):
    """Quorum 4: the first three trials at rung 1 are paused, not judged against an
    empty rung; the fourth completes the quorum and all four are judged by the
    bracket's rule against the others' records (the top third goes on)."""
    s = scheduler(tmp_path / "asha.json", quorum=4)
    ts = [SimpleNamespace(trial_id=f"t{i}", status="PENDING", last_result={}) for i in range(5)]
    ctl = Controller(ts)
    for t in ts:
        s.on_trial_add(ctl, t)
    accs = [0.1, 0.9, 0.2, 0.3]  # a chance-level trial first, as Tune's grid order had it
    for t, acc in zip(ts[:3], accs[:3], strict=True):
        t.status, t.last_result = "RUNNING", {"epoch": 1, "val_acc": acc}
        assert s.on_trial_result(ctl, t, t.last_result) == s.PAUSE
        t.status = "PAUSED"
    assert s.decisions() == [] and s.choose_trial_to_run(ctl) is ts[3]  # t4 still pending
    ts[3].status, ts[3].last_result = "RUNNING", {"epoch": 1, "val_acc": accs[3]}
    assert s.on_trial_result(ctl, ts[3], ts[3].last_result) == s.STOP
    judged = {d["trial_id"]: d for d in s.decisions()}
    assert {t: d["decision"] for t, d in judged.items()} == {
        "t0": "stop",
        "t1": "continue",
        "t2": "stop",
        "t3": "stop",
    }
    assert all(d["records"] == 3 for d in judged.values())
    assert ctl.stopped == ["t0", "t2"]  # paused and judged 'stop': stopped by the scheduler
    assert s.choose_trial_to_run(ctl) is ts[1]  # the one judged 'continue' runs again first
    # the state survives a restarted driver: nothing waits any more, t1 is still to resume
    again = scheduler(tmp_path / "asha.json", quorum=4)
    assert again.choose_trial_to_run(ctl) is ts[1]


def test_a_rung_no_other_trial_can_reach_judges_at_once(tmp_path):
    s = scheduler(tmp_path / "asha.json", quorum=4)
    t = SimpleNamespace(trial_id="only", status="RUNNING", last_result={"epoch": 1, "val_acc": 0.5})
    ctl = Controller([t])
    s.on_trial_add(ctl, t)
    assert s.on_trial_result(ctl, t, t.last_result) == s.CONTINUE  # nobody to wait for


def test_a_published_cell_never_waits_for_a_quorum(tmp_path):
    """It would go on whatever the rung says, so pausing it would only cost a restart;
    its value still enters the rung for the others."""
    pub = {"model": "resnet18", "optimizer": "sgd", "lr": 0.001}
    s = scheduler(tmp_path / "asha.json", quorum=4, protected=frozenset({cell_key(pub)}))
    t = SimpleNamespace(trial_id="p", status="RUNNING", config=pub, last_result={})
    other = SimpleNamespace(trial_id="o", status="PENDING", config={}, last_result={})
    ctl = Controller([t, other])
    for x in (t, other):
        s.on_trial_add(ctl, x)
    t.last_result = {"epoch": 1, "val_acc": 0.1}
    assert s.on_trial_result(ctl, t, t.last_result) == s.CONTINUE
    assert [r["recorded"] for r in s.rungs() if r["milestone"] == 1] == [{"p": 0.1}]


def test_a_trial_stopped_before_a_driver_restart_stays_stopped(tmp_path):
    """asha_state.json is written at each decision, Tune's experiment checkpoint (and the
    trials' result files) every few seconds: a driver killed in between is restored with
    trials ASHA had stopped still to run (test_faults.py::test_killed_driver_resumes ran
    one to its last epoch). One restored at the epoch it was judged at is stopped; one
    restored from before it runs that epoch again (Tune lost it) and is stopped there."""
    s = scheduler(tmp_path / "asha.json")
    ts = trials(s, 3)
    s.on_trial_result(None, ts[0], {"epoch": 1, "val_acc": 0.9})
    for t in ts[1:]:
        assert s.on_trial_result(None, t, {"epoch": 1, "val_acc": 0.1}) == s.STOP
    again = scheduler(tmp_path / "asha.json")
    restored = [
        SimpleNamespace(trial_id="t0", status="PENDING", last_result={"epoch": 1}),
        SimpleNamespace(trial_id="t1", status="PENDING", last_result={"epoch": 1}),
        SimpleNamespace(trial_id="t2", status="PAUSED", last_result={}),
    ]
    ctl = Controller(restored)
    for t in restored:
        again.on_trial_add(ctl, t)
    assert again.choose_trial_to_run(ctl) is restored[0]
    assert ctl.stopped == ["t1"] and restored[1].status == "TERMINATED"
    restored[0].status = "RUNNING"
    assert again.choose_trial_to_run(ctl) is restored[2]  # to redo its epoch 1
    assert again.on_trial_result(ctl, restored[2], {"epoch": 1, "val_acc": 0.1}) == again.STOP
    assert [d["decision"] for d in again.decisions()] == ["continue", "stop", "stop"]
