"""Sweep scripts and the machinery they share."""

import os
import sys

from trainables.progress import LOG_LINE_RE

# Ray reads this once, when it is imported. A private local Ray (no --ray-address and no
# $RAY_ADDRESS: `python sweeps/<name>.py`) must stay on 127.0.0.1, and without it Ray binds
# the machine's external address even when told 127.0.0.1. A driver joining a cluster
# keeps whatever the cluster was started with.
if not any(a.startswith("--ray-address") for a in sys.argv) and not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# The driver prints the trials' output. Progress lines of different trials differ only in
# numbers, which Ray's log de-duplication ignores: it would print one trial's line and
# "[repeated 3x across cluster]" for the rest. And in a log (not a terminal) Ray's colour
# codes around each "(train_trial pid=...)" prefix are noise.
os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", LOG_LINE_RE)
if not sys.stdout.isatty():
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
