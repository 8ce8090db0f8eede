#!/usr/bin/env bash
# One prepared check of the GPU path, under 8 minutes on one GPU (docs/gpu.md, "Checking
# the GPU path"). Run from a checkout after `make install`:
#
#     bash bench/gpu_check.sh
#
# Steps, each with its own time limit, all run even when one fails (bench/gpu_check.py
# does the work; each step leaves its outcome in the work folder for the last one):
#   tests   the CUDA-only tests (a skip fails on a GPU)                         <= 90 s
#   sweep   MNIST Table I, paper preset (224 px, amp) on a subset, 3 trials x
#           0.25 GPU, nvidia-smi sampled every second                          <= 230 s
#   ratio   images/s of a trial inside Tune / the engine bare (goal >= 0.7)    <= 100 s
#   record  one row to results/benchmarks/gpu_check.parquet (bench/common.py)   <= 20 s
# Without a GPU it says so and dry-runs the same steps on the CPU at tiny size, writing its
# row to a temporary bench folder (unless CNNSWEEP_BENCH_DIR is set), and exits 0 if the
# plumbing worked.
#
# Environment: CNNSWEEP_DATA_ROOT (default ../shared/data; MNIST as Parquet),
# CNNSWEEP_WEIGHTS_DIR (ImageNet files of the Table I models; without them: from scratch),
# GPU_CHECK_WORK (the work folder; default a new temporary one, kept and printed),
# PYTHON (default .venv/bin/python).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
if [[ ! -x $PY ]]; then
  echo "gpu_check: $PY not found; run make install first (the check needs the venv)" >&2
  exit 2
fi
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}
mkdir -p "$WORK"
# A private Ray with this machine's GPU, never a cluster a RAY_ADDRESS points at.
unset RAY_ADDRESS
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true

MODE=$("$PY" -m bench.gpu_check mode)
if [[ $MODE == gpu ]]; then
  T_TESTS=90 T_SWEEP=230 T_RATIO=100
else
  echo "=================================================================================="
  echo "gpu_check: NO GPU on this machine: the GPU figures were NOT measured."
  echo "gpu_check: dry run of the check's own plumbing on the CPU, at tiny size."
  echo "=================================================================================="
  # the dry run's row must not land in the committed results/benchmarks
  export CNNSWEEP_BENCH_DIR=${CNNSWEEP_BENCH_DIR:-$WORK/bench}
  T_TESTS=120 T_SWEEP=240 T_RATIO=150
fi
echo "gpu_check: mode $MODE, work folder $WORK, started $(date -u +%FT%TZ)"

failed=()
step() {  # step NAME SECONDS: one subcommand under its own time limit
  local name=$1 limit=$2 rc=0 t0=$SECONDS
  echo "---- $name (limit ${limit} s) ----"
  timeout --kill-after=10 "$limit" "$PY" -m bench.gpu_check "$name" --work "$WORK" \
    --mode "$MODE" || rc=$?
  echo "---- $name: exit $rc after $((SECONDS - t0)) s$([[ $rc == 124 ]] && echo ' (TIME LIMIT)') ----"
  if [[ $rc != 0 ]]; then failed+=("$name"); fi
}
step tests "$T_TESTS"
step sweep "$T_SWEEP"
step ratio "$T_RATIO"
step record 20

echo "gpu_check: work folder $WORK; row in ${CNNSWEEP_BENCH_DIR:-results/benchmarks}/gpu_check.parquet"
if ((${#failed[@]})); then
  echo "gpu_check: FAILED steps: ${failed[*]} (mode $MODE, ${SECONDS} s)"
  exit 1
fi
echo "gpu_check: OK (mode $MODE, ${SECONDS} s)"
