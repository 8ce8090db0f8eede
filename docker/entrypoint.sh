#!/usr/bin/env bash
# The containers' start-up commands, one role each, configured by environment variables.
# compose.yaml runs every service through it; tests/test_docker.py runs the same roles
# outside Docker. Any other first argument is run as a command (`docker run IMAGE python ...`).
#
#   entrypoint.sh ray-head   [extra `ray start` flags]   Ray head (GCS, dashboard, jobs API)
#   entrypoint.sh ray-worker [extra `ray start` flags]   Ray worker joining RAY_HEAD_ADDRESS
#   entrypoint.sh mlflow     [extra `mlflow server` flags]
#   entrypoint.sh optuna-dashboard [extra `optuna-dashboard` flags]   the sweeps' studies
#   entrypoint.sh health     [ROLE]   exit 0 when ROLE (default: the role this container
#                                     started) answers; used by HEALTHCHECK and compose
#
# Ray:    RAY_GCS_PORT (6379), RAY_DASHBOARD_HOST (0.0.0.0: the container's interfaces),
#         RAY_DASHBOARD_PORT (8265), RAY_DASHBOARD_AGENT_PORT (52365), RAY_HEAD_ADDRESS
#         (ray-head:6379), and when set: RAY_NODE_IP, RAY_NUM_CPUS, RAY_NUM_GPUS.
#         Token auth: RAY_AUTH_MODE=token with RAY_AUTH_TOKEN_PATH (the compose secret).
#         With a PostgreSQL password (below) and no CNNSWEEP_OPTUNA_STORAGE, the head
#         exports CNNSWEEP_OPTUNA_STORAGE (database OPTUNA_DB) for the jobs it runs.
# MLflow: MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000), MLFLOW_WORKERS (1),
#         MLFLOW_ARTIFACTS_DESTINATION (/data/mlartifacts), MLFLOW_BACKEND_STORE_URI, or
#         else POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required) with POSTGRES_USER,
#         POSTGRES_DB (mlflow), POSTGRES_HOST (postgres), POSTGRES_PORT (5432). The URI
#         goes to mlflow in its environment, never on a command line (visible in `ps`)
#         nor in the log.
# Optuna: OPTUNA_DASHBOARD_HOST (0.0.0.0), OPTUNA_DASHBOARD_PORT (8080),
#         OPTUNA_DASHBOARD_SERVER (wsgiref: one process), CNNSWEEP_OPTUNA_STORAGE, or else
#         the PostgreSQL settings above with OPTUNA_DB (optuna): its own database, since
#         MLflow and Optuna both keep an alembic_version table. The role creates a missing
#         PostgreSQL database and Optuna's tables (optuna-dashboard creates neither); the
#         URL reaches it in its environment only, as MLflow's does.
set -euo pipefail

RAY_BIN=${RAY_BIN:-ray}
MLFLOW_BIN=${MLFLOW_BIN:-mlflow}
PYTHON_BIN=${PYTHON_BIN:-python3}
ROLE_FILE=${CNNSWEEP_ROLE_FILE:-/tmp/cnnsweep-role}

: "${RAY_GCS_PORT:=6379}" "${RAY_DASHBOARD_HOST:=0.0.0.0}" "${RAY_DASHBOARD_PORT:=8265}"
: "${RAY_DASHBOARD_AGENT_PORT:=52365}" "${RAY_HEAD_ADDRESS:=ray-head:6379}"
: "${MLFLOW_HOST:=0.0.0.0}" "${MLFLOW_PORT:=5000}" "${MLFLOW_WORKERS:=1}"
: "${MLFLOW_ARTIFACTS_DESTINATION:=/data/mlartifacts}"
: "${OPTUNA_DASHBOARD_HOST:=0.0.0.0}" "${OPTUNA_DASHBOARD_PORT:=8080}"
: "${OPTUNA_DASHBOARD_SERVER:=wsgiref}" "${OPTUNA_DB:=optuna}"
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

has_postgres_password() { [[ -n ${POSTGRES_PASSWORD:-} || -n ${POSTGRES_PASSWORD_FILE:-} ]]; }

# postgres_uri DB: postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB (+psycopg2: SQLAlchemy
# 2.1 maps a bare postgresql:// to psycopg 3, which the image does not install), user and
# password percent-encoded (a password with @ or / would otherwise break the URI). The
# password is POSTGRES_PASSWORD or the content of POSTGRES_PASSWORD_FILE (a compose secret:
# then it is not in `docker inspect` either), read from the environment or that file, so
# it is never an argument of any process.
postgres_uri() {
  POSTGRES_USER=${POSTGRES_USER:-mlflow} POSTGRES_DB=$1 \
    POSTGRES_HOST=${POSTGRES_HOST:-postgres} POSTGRES_PORT=${POSTGRES_PORT:-5432} \
    "$PYTHON_BIN" -c 'import os; from urllib.parse import quote
e = os.environ
password = e.get("POSTGRES_PASSWORD") or open(e["POSTGRES_PASSWORD_FILE"]).read().rstrip("\n")
user, password = quote(e["POSTGRES_USER"], safe=""), quote(password, safe="")
print("postgresql+psycopg2://{}:{}@{}:{}/{}".format(
    user, password, e["POSTGRES_HOST"], e["POSTGRES_PORT"], e["POSTGRES_DB"]))'
}

# CNNSWEEP_OPTUNA_STORAGE ready for optuna-dashboard, which creates nothing: a PostgreSQL
# database that is missing is created (through the server's `postgres` database; needs
# CREATEDB, which the compose file's superuser has), then Optuna's own storage class
# writes or upgrades its tables. Idempotent, so every start (and an old pgdata volume,
# which initdb scripts would skip) ends with the same database.
optuna_prepare() {
  "$PYTHON_BIN" -c 'import os, sys
from contextlib import closing
import optuna
from sqlalchemy.engine import make_url
storage = os.environ["CNNSWEEP_OPTUNA_STORAGE"]
url = make_url(storage)
if url.get_backend_name() == "postgresql":
    import psycopg2
    from psycopg2 import errors, sql
    def connect(db):
        return psycopg2.connect(host=url.host, port=url.port, user=url.username,
                                password=url.password, dbname=db, **url.query)
    try:
        connect(url.database).close()
    except psycopg2.OperationalError:  # no such database (or no server: fails again below)
        with closing(connect("postgres")) as conn:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            try:
                conn.cursor().execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
                print(f"entrypoint: optuna-dashboard: created database {url.database}",
                      file=sys.stderr)
            except errors.DuplicateDatabase:
                pass  # another start created it meanwhile
optuna.storages.RDBStorage(storage)'
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
    # where the jobs' drivers (they run here) write their Optuna studies: built here, so
    # compose's environment holds no password
    if [[ -z ${CNNSWEEP_OPTUNA_STORAGE:-} ]] && has_postgres_password; then
      CNNSWEEP_OPTUNA_STORAGE=$(postgres_uri "$OPTUNA_DB") || exit 2
      export CNNSWEEP_OPTUNA_STORAGE
      log "ray-head: Optuna studies in database $OPTUNA_DB at ${POSTGRES_HOST:-postgres}"
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
      has_postgres_password ||
        die "mlflow: set MLFLOW_BACKEND_STORE_URI, or POSTGRES_PASSWORD for the PostgreSQL store"
      MLFLOW_BACKEND_STORE_URI=$(postgres_uri "${POSTGRES_DB:-mlflow}") || exit 2
    fi
    export MLFLOW_BACKEND_STORE_URI  # read by `mlflow server` (--backend-store-uri's envvar)
    log "mlflow: backend store ${MLFLOW_BACKEND_STORE_URI%%://*}://..., artifacts in $MLFLOW_ARTIFACTS_DESTINATION"
    exec "$MLFLOW_BIN" server --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" \
      --workers "$MLFLOW_WORKERS" --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" "$@"
    ;;
  optuna-dashboard)
    shift
    echo "$role" >"$ROLE_FILE" 2>/dev/null || true
    if [[ -z ${CNNSWEEP_OPTUNA_STORAGE:-} ]]; then
      has_postgres_password ||
        die "optuna-dashboard: set CNNSWEEP_OPTUNA_STORAGE, or POSTGRES_PASSWORD for PostgreSQL"
      CNNSWEEP_OPTUNA_STORAGE=$(postgres_uri "$OPTUNA_DB") || exit 2
    fi
    export CNNSWEEP_OPTUNA_STORAGE
    log "optuna-dashboard: storage ${CNNSWEEP_OPTUNA_STORAGE%%://*}://..."
    optuna_prepare || exit 2
    # The storage URL is optuna-dashboard's positional argument: put into its argv inside
    # Python, so `ps` never shows it. SIGTERM ends it even as a container's PID 1 (where a
    # signal without a handler is ignored).
    exec "$PYTHON_BIN" -c 'import os, signal, sys
from importlib.metadata import entry_points
(cli,) = entry_points(group="console_scripts", name="optuna-dashboard")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sys.argv[1:1] = [os.environ["CNNSWEEP_OPTUNA_STORAGE"]]
cli.load()()' --host "$OPTUNA_DASHBOARD_HOST" --port "$OPTUNA_DASHBOARD_PORT" \
      --server "$OPTUNA_DASHBOARD_SERVER" "$@"
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
      # /api/studies reads the storage: the dashboard answers and its database is there
      optuna-dashboard)
        http_ok "http://$(local_host "$OPTUNA_DASHBOARD_HOST"):$OPTUNA_DASHBOARD_PORT/api/studies" ;;
      "") exit 0 ;;  # not started through a role (e.g. a one-off sweep): nothing to probe
      *) die "health: unknown role '$check' (ray-head, ray-worker, mlflow, optuna-dashboard)" ;;
    esac
    ;;
  "") die "usage: entrypoint.sh {ray-head|ray-worker|mlflow|optuna-dashboard|health [ROLE]|COMMAND...}" ;;
  *) exec "$@" ;;
esac
