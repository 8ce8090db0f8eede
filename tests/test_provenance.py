"""Committed provenance names folders so that it holds on any machine: the data root as
``$CNNSWEEP_DATA_ROOT``, the checkout's folders relative to it, never this machine's paths."""

from __future__ import annotations

from pathlib import Path

from sweeps.provenance import portable


def test_data_root_and_checkout_are_named_portably(tmp_path):
    data, checkout = tmp_path / "shared" / "data", tmp_path / "main"
    prov = {
        "command": f"x.py --data-root {data} --results-dir {checkout}/results --seed 0",
        "data": {"source": f"parquet:{data}/mnist"},
        "checkout": str(checkout),
        "neighbour": f"{checkout}x/y",  # a longer name that starts alike is not inside
        "n": 3,
        "f": 0.5,
    }
    got = portable(prov, {"$CNNSWEEP_DATA_ROOT": data, ".": checkout})
    assert got["command"] == "x.py --data-root $CNNSWEEP_DATA_ROOT --results-dir results --seed 0"
    assert got["data"]["source"] == "parquet:$CNNSWEEP_DATA_ROOT/mnist"
    assert got["checkout"] == "."
    assert got["neighbour"] == f"{checkout}x/y"
    assert (got["n"], got["f"]) == (3, 0.5)


def test_a_linked_data_root_is_named_in_both_forms(tmp_path):
    """``--data-root`` through a link (as ../shared beside a clone often is): the command
    line has the link, the data's source the resolved folder; both become the variable."""
    real = tmp_path / "real" / "data"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    given = tmp_path / "link" / "data"
    prov = {"command": f"--data-root {given}", "source": f"parquet:{real}/mnist"}
    got = portable(prov, {"$CNNSWEEP_DATA_ROOT": str(given), ".": None})
    assert got == {
        "command": "--data-root $CNNSWEEP_DATA_ROOT",
        "source": "parquet:$CNNSWEEP_DATA_ROOT/mnist",
    }


def test_data_root_inside_the_checkout_keeps_its_variable(tmp_path):
    checkout = tmp_path / "main"
    data = checkout / "data"
    got = portable({"s": f"parquet:{data}/mnist"}, {"$CNNSWEEP_DATA_ROOT": data, ".": checkout})
    assert got == {"s": "parquet:$CNNSWEEP_DATA_ROOT/mnist"}  # the longer root wins
    assert Path(got["s"].split(":", 1)[1]).parts[0] == "$CNNSWEEP_DATA_ROOT"
