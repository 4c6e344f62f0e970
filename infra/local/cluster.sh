#!/usr/bin/env bash
# A 2-node Ray cluster on one machine (head + one worker node), for tests and by hand.
#   infra/local/cluster.sh up|down|status
# Env: RAY_HEAD_PORT (6380), RAY_DASHBOARD_PORT (8265), A2V_STATE_DIR (.a2v-local),
#      HEAD_CPUS (2), WORKER_CPUS (1). Uses the ray on PATH (activate .venv first).
set -euo pipefail
STATE=${A2V_STATE_DIR:-.a2v-local}
PORT=${RAY_HEAD_PORT:-6380}
DPORT=${RAY_DASHBOARD_PORT:-8265}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
mkdir -p "$STATE"
case "${1:-status}" in
  up)
    # --block keeps each node's processes under one process group we can stop exactly.
    setsid ray start --head --block --num-cpus="${HEAD_CPUS:-2}" --port="$PORT" \
      --dashboard-host=127.0.0.1 --dashboard-port="$DPORT" --object-store-memory=2000000000 \
      --disable-usage-stats >"$STATE/ray-head.log" 2>&1 &
    echo $! >"$STATE/ray-head.pgid"
    for _ in $(seq 120); do curl -sf "http://127.0.0.1:$DPORT/api/version" >/dev/null 2>&1 && break; sleep 0.5; done
    setsid ray start --block --address="127.0.0.1:$PORT" --num-cpus="${WORKER_CPUS:-1}" \
      --object-store-memory=1000000000 --disable-usage-stats >"$STATE/ray-worker.log" 2>&1 &
    echo $! >"$STATE/ray-worker.pgid"
    for _ in $(seq 120); do
      n=$(python -c "import ray; ray.init(address='127.0.0.1:$PORT', logging_level='ERROR'); print(sum(x['Alive'] for x in ray.nodes()))" 2>/dev/null || echo 0)
      [ "$n" = "2" ] && break; sleep 1
    done
    echo "127.0.0.1:$PORT" >"$STATE/ray-address"
    echo "ray cluster up: address 127.0.0.1:$PORT, dashboard / jobs http://127.0.0.1:$DPORT"
    ;;
  down)
    for node in worker head; do
      f="$STATE/ray-$node.pgid"
      [ -f "$f" ] && kill -- "-$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    done
    rm -f "$STATE/ray-address"
    echo "ray cluster down"
    ;;
  status)
    ray status --address="127.0.0.1:$PORT" || exit 1
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
