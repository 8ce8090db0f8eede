"""Joining Ray: the cluster a sweep runs on, and whether one trial fits on one of its nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray

from sweeps.cluster import ensure_token
from sweeps.plan import Resources
from trainables.config import ConfigError


@dataclass(frozen=True)
class Cluster:
    """The joined cluster and what each trial takes from it."""

    cpus_per_trial: int
    gpus_per_trial: float  # resolved: the flag, else 1 when the cluster has GPUs, else 0
    resources: dict  # the cluster's CPU, GPU and memory totals, for provenance


def connect(resources: Resources) -> Cluster:
    """Join (or start) Ray and check that a trial can be placed; ConfigError otherwise."""
    try:
        init_ray(resources.ray_address)
    except (ConnectionError, ray.exceptions.RayError) as exc:
        where = resources.ray_address or os.environ.get("RAY_ADDRESS")
        raise ConfigError(
            f"cannot join the Ray cluster at {where} ({str(exc).splitlines()[0][:300]}); "
            "allowed: the address of a running head (ray start --head) reachable with "
            "its auth token (RAY_AUTH_MODE=token, ~/.ray/auth_token)"
        ) from None
    total = ray.cluster_resources()
    gpus = resources.gpus_per_trial
    if gpus is None:
        gpus = 1 if total.get("GPU", 0) else 0
    if msg := unplaceable(resources.cpus_per_trial, gpus):
        raise ConfigError(msg)
    keep = {k: v for k, v in total.items() if k in ("CPU", "GPU", "memory")}
    return Cluster(resources.cpus_per_trial, gpus, keep)


def init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=True)
    else:  # a private single-node cluster on loopback, for `python sweeps/<name>.py`
        print(ensure_token(), flush=True)  # else Ray writes one readable by everyone
        # address="local": a new private instance, never a stale `ray start` cluster that
        # /tmp/ray/ray_current_cluster still names
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")


def unplaceable(cpus: int, gpus: float) -> str | None:
    """Why no node of the cluster could ever run one trial (None: one can).

    A trial's resources must fit on one node; Tune would otherwise keep the trial pending
    forever. Checked against the nodes alive now (an autoscaler's future nodes are not
    known here)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if gpus > most_gpus:
        total = ray.cluster_resources().get("GPU", 0)
        return (
            f"--gpus-per-trial {gpus:g}: the Ray cluster has {total:g} "
            f"GPUs, at most {most_gpus:g} on one node; allowed: 0 to {most_gpus:g}"
        )
    fits = [n.get("CPU", 0) for n in nodes if n.get("GPU", 0) >= gpus]
    most_cpus = max(fits, default=0)
    if cpus > most_cpus:
        return (
            f"--cpus-per-trial {cpus}: no node of the Ray cluster has {cpus} CPUs"
            + (f" beside {gpus:g} GPUs" if gpus else "")
            + f" (the largest has {most_cpus:g}); allowed: 1..{int(most_cpus)}"
        )
    return None
