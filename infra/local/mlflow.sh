#!/usr/bin/env bash
# An MLflow tracking server on 127.0.0.1 (sqlite backend, proxied local artifacts), in its own
# process group so `down` stops uvicorn and its huey consumers together.
#   infra/local/mlflow.sh up|down
# Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:${MLFLOW_PORT:-5001}
set -euo pipefail
STATE=${A2V_STATE_DIR:-.a2v-local}
PORT=${MLFLOW_PORT:-5001}
mkdir -p "$STATE"
case "${1:-up}" in
  up)
    setsid mlflow server --backend-store-uri "sqlite:///$PWD/$STATE/mlflow-server.db" \
      --artifacts-destination "$PWD/$STATE/mlartifacts" --host 127.0.0.1 --port "$PORT" \
      >"$STATE/mlflow.log" 2>&1 &
    echo $! >"$STATE/mlflow.pgid"
    for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.5; done
    echo "mlflow up: http://127.0.0.1:$PORT (pgid $(cat "$STATE/mlflow.pgid"))"
    ;;
  down)
    [ -f "$STATE/mlflow.pgid" ] && kill -- "-$(cat "$STATE/mlflow.pgid")" 2>/dev/null || true
    rm -f "$STATE/mlflow.pgid"; echo "mlflow down"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
