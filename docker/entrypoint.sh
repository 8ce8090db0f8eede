#!/usr/bin/env bash
# The containers' start-up commands, one role each, configured by environment variables.
# compose.yaml runs every service through it; tests/test_docker.py runs the same roles
# outside Docker. Any other first argument is run as a command (`docker run IMAGE python ...`).
#
#   entrypoint.sh ray-head   [extra `ray start` flags]   Ray head (GCS, dashboard, jobs API)
#   entrypoint.sh ray-worker [extra `ray start` flags]   Ray worker joining RAY_HEAD_ADDRESS
#   entrypoint.sh mlflow     [extra `mlflow server` flags]
#   entrypoint.sh health     [ROLE]   exit 0 when ROLE (default: the role this container
#                                     started) answers; used by HEALTHCHECK and compose
#
# Ray:    RAY_GCS_PORT (6379), RAY_DASHBOARD_HOST (0.0.0.0: the container's interfaces),
#         RAY_DASHBOARD_PORT (8265), RAY_DASHBOARD_AGENT_PORT (52365), RAY_HEAD_ADDRESS
#         (ray-head:6379), and when set: RAY_NODE_IP, RAY_NUM_CPUS, RAY_NUM_GPUS.
#         Token auth: RAY_AUTH_MODE=token with RAY_AUTH_TOKEN_PATH (the compose secret).
# MLflow: MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000), MLFLOW_WORKERS (1),
#         MLFLOW_ARTIFACTS_DESTINATION (/data/mlartifacts), MLFLOW_BACKEND_STORE_URI, or
#         else POSTGRES_PASSWORD (required) with POSTGRES_USER, POSTGRES_DB (mlflow),
#         POSTGRES_HOST (postgres), POSTGRES_PORT (5432). The URI goes to mlflow in its
#         environment, never on a command line (visible in `ps`) nor in the log.
set -euo pipefail

RAY_BIN=${RAY_BIN:-ray}
MLFLOW_BIN=${MLFLOW_BIN:-mlflow}
PYTHON_BIN=${PYTHON_BIN:-python3}
ROLE_FILE=${CNNSWEEP_ROLE_FILE:-/tmp/cnnsweep-role}

: "${RAY_GCS_PORT:=6379}" "${RAY_DASHBOARD_HOST:=0.0.0.0}" "${RAY_DASHBOARD_PORT:=8265}"
: "${RAY_DASHBOARD_AGENT_PORT:=52365}" "${RAY_HEAD_ADDRESS:=ray-head:6379}"
: "${MLFLOW_HOST:=0.0.0.0}" "${MLFLOW_PORT:=5000}" "${MLFLOW_WORKERS:=1}"
: "${MLFLOW_ARTIFACTS_DESTINATION:=/data/mlartifacts}"
export RAY_USAGE_STATS_ENABLED=${RAY_USAGE_STATS_ENABLED:-0}
export MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true}
# MLflow's job runner executes submitted code; nothing here uses it.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

log() { echo "entrypoint: $*" >&2; }
die() { log "$*"; exit 2; }

# `ray start` flags shared by head and workers (both block: the container lives as long
# as the node, and SIGTERM from `docker stop` shuts the node down cleanly).
ray_node_flags() {
  RAY_FLAGS=(--block --disable-usage-stats "--dashboard-agent-listen-port=$RAY_DASHBOARD_AGENT_PORT")
  if [[ -n ${RAY_NODE_IP:-} ]]; then RAY_FLAGS+=("--node-ip-address=$RAY_NODE_IP"); fi
  if [[ -n ${RAY_NUM_CPUS:-} ]]; then RAY_FLAGS+=("--num-cpus=$RAY_NUM_CPUS"); fi
  if [[ -n ${RAY_NUM_GPUS:-} ]]; then RAY_FLAGS+=("--num-gpus=$RAY_NUM_GPUS"); fi
  return 0
}

# postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB (+psycopg2: SQLAlchemy 2.1 maps a bare
# postgresql:// to psycopg 3, which the image does not install), user and password
# percent-encoded (a password with @ or / would otherwise break the URI); read from the
# environment, so the password is never an argument of any process.
postgres_uri() {
  [[ -n ${POSTGRES_PASSWORD:-} ]] ||
    die "mlflow: set MLFLOW_BACKEND_STORE_URI, or POSTGRES_PASSWORD for the PostgreSQL store"
  POSTGRES_USER=${POSTGRES_USER:-mlflow} POSTGRES_DB=${POSTGRES_DB:-mlflow} \
    POSTGRES_HOST=${POSTGRES_HOST:-postgres} POSTGRES_PORT=${POSTGRES_PORT:-5432} \
    "$PYTHON_BIN" -c 'import os; from urllib.parse import quote
e = os.environ
user, password = (quote(e[k], safe="") for k in ("POSTGRES_USER", "POSTGRES_PASSWORD"))
print("postgresql+psycopg2://{}:{}@{}:{}/{}".format(
    user, password, e["POSTGRES_HOST"], e["POSTGRES_PORT"], e["POSTGRES_DB"]))'
}

# exit 0 when URL answers 200 (python, not curl: the images have no curl)
http_ok() {
  "$PYTHON_BIN" -c 'import sys, urllib.request
sys.exit(urllib.request.urlopen(sys.argv[1], timeout=5).status != 200)' "$1" 2>/dev/null
}

local_host() { [[ $1 == 0.0.0.0 ]] && echo 127.0.0.1 || echo "$1"; }

role=${1:-}
case $role in
  ray-head)
    shift
    echo "$role" >"$ROLE_FILE" 2>/dev/null || true
    # the cluster's token (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token): created 0600 when
    # missing, reused when there (compose mounts it as a secret); one line names the file
    if [[ ${RAY_AUTH_MODE:-token} == token ]]; then
      token_line=$("$PYTHON_BIN" -m sweeps.cluster token) || exit 2
      log "$token_line"
    fi
    ray_node_flags
    exec "$RAY_BIN" start --head "--port=$RAY_GCS_PORT" "${RAY_FLAGS[@]}" \
      --include-dashboard=true "--dashboard-host=$RAY_DASHBOARD_HOST" \
      "--dashboard-port=$RAY_DASHBOARD_PORT" "$@"
    ;;
  ray-worker)
    shift
    echo "$role" >"$ROLE_FILE" 2>/dev/null || true
    ray_node_flags
    exec "$RAY_BIN" start "--address=$RAY_HEAD_ADDRESS" "${RAY_FLAGS[@]}" "$@"
    ;;
  mlflow)
    shift
    echo "$role" >"$ROLE_FILE" 2>/dev/null || true
    if [[ -z ${MLFLOW_BACKEND_STORE_URI:-} ]]; then
      MLFLOW_BACKEND_STORE_URI=$(postgres_uri)
    fi
    export MLFLOW_BACKEND_STORE_URI  # read by `mlflow server` (--backend-store-uri's envvar)
    log "mlflow: backend store ${MLFLOW_BACKEND_STORE_URI%%://*}://..., artifacts in $MLFLOW_ARTIFACTS_DESTINATION"
    exec "$MLFLOW_BIN" server --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" \
      --workers "$MLFLOW_WORKERS" --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" "$@"
    ;;
  health)
    check=${2:-$(cat "$ROLE_FILE" 2>/dev/null || true)}
    case $check in
      # GCS through the dashboard, then this node's raylet through its agent (as KubeRay probes)
      ray-head)
        http_ok "http://$(local_host "$RAY_DASHBOARD_HOST"):$RAY_DASHBOARD_PORT/api/gcs_healthz" &&
          http_ok "http://127.0.0.1:$RAY_DASHBOARD_AGENT_PORT/api/local_raylet_healthz" ;;
      ray-worker) http_ok "http://127.0.0.1:$RAY_DASHBOARD_AGENT_PORT/api/local_raylet_healthz" ;;
      mlflow) http_ok "http://$(local_host "$MLFLOW_HOST"):$MLFLOW_PORT/health" ;;
      "") exit 0 ;;  # not started through a role (e.g. a one-off sweep): nothing to probe
      *) die "health: unknown role '$check' (ray-head, ray-worker, mlflow)" ;;
    esac
    ;;
  "") die "usage: entrypoint.sh {ray-head|ray-worker|mlflow|health [ROLE]|COMMAND...}" ;;
  *) exec "$@" ;;
esac
