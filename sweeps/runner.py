"""A sweep from the command line: flags -> plan -> checks -> data -> the sweep.

A paper script declares a :class:`~sweeps.sweep.SweepDef` and calls :func:`main`.
Everything that can be wrong with the input is checked here, before Ray starts a single
trial: configs, data files, the results folder, the tracking server, the Ray address.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from sweeps import run_record
from sweeps.flags import build_parser
from sweeps.load import data_sha256, load_data
from sweeps.plan import Plan, make_plan
from sweeps.settings import RESULTS_ENV, apply_environment
from sweeps.sweep import SweepDef
from sweeps.tracking_uri import TrackingError, check_tracking_server
from trainables.config import ConfigError
from trainables.data import DataError


def main(
    sweep: SweepDef, argv: list[str] | None = None, doc: str | None = None, prog: str | None = None
) -> int:
    """Parse flags, validate, run the sweep, write results; the process exit code."""
    args = build_parser(sweep, doc, prog).parse_args(argv)
    apply_environment(sys.argv[1:] if argv is None else argv)
    try:
        plan = make_plan(sweep, args)
        check_services(plan)
        data = load_data(plan)
        if plan.resume:
            run_record.check_same_data(plan.resume, data_sha256(data))
        # imported only now: Ray reads apply_environment's settings when first imported
        from sweeps import orchestrate

        return orchestrate.run_sweep(plan, data)
    except (ConfigError, DataError, TrackingError) as exc:
        return fail(str(exc))


def fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def check_services(plan: Plan) -> None:
    """What the sweep needs outside this process answers: MLflow, the Ray head, the
    results folder, the Optuna study's database."""
    check_tracking_server(plan.tracking_uri)
    check_ray_address(plan.resources.ray_address)
    check_writable(plan.results_dir)
    from sweeps.study import check_storage  # imports Ray: after apply_environment

    check_storage(plan.optuna_storage)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"results dir {folder} is not writable ({exc.strerror}); "
            f"pass --results-dir or set ${RESULTS_ENV}"
        ) from None


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Fail in seconds, naming the address, when the Ray head to join (``--ray-address``,
    else ``$RAY_ADDRESS``) refuses a TCP connection; ``ray.init`` would retry for a minute
    first. ``auto``, ``local`` and no address at all are left to ``ray.init``."""
    where = "--ray-address" if address else "$RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    allowed = (
        "allowed: the host:port of a running Ray head (ray start --head; make up), "
        "ray://host:port, auto, or no address for a private local cluster"
    )
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or "/" in hostport:
        raise ConfigError(f"{where} {address!r} is not host:port; {allowed}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, OverflowError) as exc:  # OverflowError: a port above 65535
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"{where} {address!r}: no Ray head answers ({reason}); {allowed}"
        ) from None
