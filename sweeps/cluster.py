"""The local Ray cluster ``make up`` runs: its auth token, and stopping only it.

The token is created on first use, readable by its owner only.

Ray 2.60 turns token authentication on by default: ``ray start`` (with
``RAY_AUTH_MODE=token``, as ``make up`` runs it) refuses to start without a token, and
clients (``ray job submit``, ``ray.init``) send it. Ray's own generator writes
``~/.ray/auth_token`` with the umask's mode (world-readable under the usual 022), yet the
token is the key to the jobs API, which runs arbitrary code. So every way this project
starts a cluster (``make up``, ``python sweeps/<name>.py``, the docker entrypoint's head
role) calls :func:`ensure_token` first: an existing token is reused, a missing one is
created 0600 in a 0700 folder, and one line says where, never what.

    python -m sweeps.cluster token          # create the token if missing; say where it is
    python -m sweeps.cluster stop --port N  # stop the cluster whose GCS is on port N

``ray stop`` would stop every Ray cluster of the user on the machine (a second sweep's
private cluster, a test's); ``stop`` ends only the processes of the one on its port.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import stat
import sys
from pathlib import Path

TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"  # Ray's own names


def token_path() -> Path:
    """Where Ray looks for the token file: ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    return Path(os.environ.get(TOKEN_PATH_ENV) or Path.home() / ".ray" / "auth_token").expanduser()


def ensure_token() -> str:
    """Make sure Ray finds a token; returns the one line to tell the user what was done."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return f"Ray auth token: none (RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']})"
    if os.environ.get(TOKEN_ENV):
        return f"Ray auth token: from ${TOKEN_ENV}"
    path = token_path()
    if path.is_file() and path.stat().st_size:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077 and os.access(path, os.W_OK) and path.stat().st_uid == os.getuid():
            path.chmod(0o600)  # Ray's own generator leaves it readable by everyone
            return f"Ray auth token: {path} (existing; mode {mode:o} tightened to 600)"
        return f"Ray auth token: {path} (existing)"
    created = not path.parent.exists()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if created:
        path.parent.chmod(0o700)  # mkdir's mode is masked by the umask
    # O_EXCL: two starts racing never both write (the loser keeps the winner's token);
    # the mode is set at creation, so the token is never readable by others, not even briefly
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return f"Ray auth token: {path} (existing)"
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    return f"Ray auth token: {path} (created, readable by its owner only)"


def cluster_processes(gcs_port: int) -> list:
    """The processes of the cluster whose GCS listens on ``gcs_port``, with their children
    (Ray's agents name no port and outlive their raylet)."""
    import psutil

    marks = (f":{gcs_port} ", f"--gcs_server_port={gcs_port}", f"--port={gcs_port}")
    found = {}
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or []) + " "
        ours = "ray" in cmdline and "sweeps.cluster" not in cmdline
        if ours and any(m in cmdline for m in marks):
            found[p.pid] = p
            with contextlib.suppress(psutil.Error):
                found |= {c.pid: c for c in p.children(recursive=True)}
    return list(found.values())


def terminate_all(procs, timeout: float = 10) -> None:
    """TERM, then KILL what is left (Ray's agents can ignore TERM)."""
    import psutil

    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


def stop(gcs_port: int) -> int:
    """Stop the cluster on ``gcs_port``; returns how many processes it had."""
    procs = cluster_processes(gcs_port)
    terminate_all(procs)
    return len(procs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweeps.cluster", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("token", help="create the Ray auth token if missing; say where it is")
    s = sub.add_parser("stop", help="stop the Ray cluster whose GCS is on --port")
    s.add_argument("--port", type=int, required=True, help="the head's GCS port (ray start --port)")
    args = p.parse_args(argv)
    if args.command == "stop":
        n = stop(args.port)
        print(f"Ray on port {args.port}: " + (f"stopped {n} processes" if n else "not running"))
        return 0
    try:
        print(ensure_token())
    except OSError as exc:
        print(
            f"error: cannot create the Ray auth token at {token_path()} ({exc.strerror}); "
            f"allowed: a writable ~/.ray, or ${TOKEN_PATH_ENV} naming a writable file",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
