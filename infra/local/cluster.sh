#!/usr/bin/env bash
# A multi-node Ray cluster on one machine, for tests and by hand. Uses the ray/python on PATH
# (activate .venv first).
#
#   infra/local/cluster.sh up                 head (2 CPUs) + one worker node (1 CPU), sharing
#                                             this machine's disk (quick checks only)
#   infra/local/cluster.sh up --share-nothing head with 0 CPUs (as the RayJob manifests) and
#                                             $WORKERS worker nodes (2), each node in its own
#                                             mount namespace (infra/local/isolate.sh): an empty
#                                             private /tmp, the checkout and $A2V_HIDE hidden,
#                                             only the Python env visible. Code reaches the
#                                             nodes only through `ray job submit --working-dir`,
#                                             data through s3:// and tracking over HTTP; the
#                                             folders in $A2V_SHARE (if any) are the one file
#                                             system every node mounts (a Slurm cluster's Lustre)
#   infra/local/cluster.sh add-worker         start one more worker node (share-nothing if the
#                                             cluster is), e.g. to replace a killed one
#   infra/local/cluster.sh kill-worker N      kill worker node N at once (SIGKILL to its process
#                                             group: a preempted spot node)
#   infra/local/cluster.sh down | status
#
# Env: RAY_HEAD_PORT (6380), RAY_DASHBOARD_PORT (8265), A2V_STATE_DIR (.a2v-local),
#      HEAD_CPUS (2; 0 with --share-nothing), WORKER_CPUS (1; 2 with --share-nothing),
#      WORKERS (2, --share-nothing), A2V_HIDE (extra folders to hide, space-separated),
#      A2V_SHARE (folders every node sees, at the same path, space-separated).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=$(mkdir -p "${A2V_STATE_DIR:-.a2v-local}" && cd "${A2V_STATE_DIR:-.a2v-local}" && pwd)
PORT=${RAY_HEAD_PORT:-6380}
DPORT=${RAY_DASHBOARD_PORT:-8265}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
PY_ENV=$(python -c 'import sys; print(sys.prefix)')

free_port() {
  python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_node() {  # start_node NAME ray-start-args...: its own process group, pgid in $STATE
  local name=$1; shift
  # --block keeps each node's processes under one process group we can stop exactly. Every
  # node's agent gets its own HTTP port (the default 52365 can be bound by one node only, and
  # the job API needs the head's).
  local cmd=("$(command -v ray)" start --block --dashboard-agent-listen-port="$(free_port)" "$@")
  if [ -f "$STATE/share-nothing" ]; then
    local iso=("$HERE/isolate.sh" --hide "$ROOT" --keep "$PY_ENV")
    for d in ${A2V_HIDE:-}; do iso+=(--hide "$d"); done
    for d in ${A2V_SHARE:-}; do iso+=(--keep "$d"); done
    cmd=("${iso[@]}" -- "${cmd[@]}")
  fi
  setsid "${cmd[@]}" >"$STATE/ray-$name.log" 2>&1 &
  echo $! >"$STATE/ray-$name.pgid"
}

alive_nodes() {  # through the dashboard, as from a laptop: a share-nothing node's raylet
  # socket is in its private /tmp, so a local `ray.init(address=...)` cannot attach
  curl -sf "http://127.0.0.1:$DPORT/nodes?view=summary" 2>/dev/null | python -c "
import json, sys
print(sum(n['raylet']['state'] == 'ALIVE' for n in json.load(sys.stdin)['data']['summary']))
" 2>/dev/null || echo 0
}

wait_nodes() {  # wait_nodes N: until N nodes are alive (2 minutes at most)
  for _ in $(seq 120); do [ "$(alive_nodes)" = "$1" ] && return 0; sleep 1; done
  echo "cluster.sh: $1 nodes did not come up; logs in $STATE" >&2; return 1
}

workers() { ls "$STATE"/ray-worker*.pgid 2>/dev/null | wc -l; }

add_worker() {
  local n; n=$(cat "$STATE/next-worker" 2>/dev/null || echo 1)
  echo $((n + 1)) >"$STATE/next-worker"
  start_node "worker$n" --address="127.0.0.1:$PORT" --num-cpus="$WORKER_CPUS" \
    --object-store-memory=1000000000 --disable-usage-stats
  echo "worker$n"
}

case "${1:-status}" in
  up)
    rm -f "$STATE/share-nothing" "$STATE/next-worker"
    if [ "${2:-}" = "--share-nothing" ]; then
      "$HERE/isolate.sh" -- true || { echo "cluster.sh: --share-nothing needs isolate.sh (above)" >&2; exit 3; }
      touch "$STATE/share-nothing"
      HEAD_CPUS=${HEAD_CPUS:-0} WORKER_CPUS=${WORKER_CPUS:-2} N=${WORKERS:-2}
    else
      HEAD_CPUS=${HEAD_CPUS:-2} WORKER_CPUS=${WORKER_CPUS:-1} N=1
    fi
    echo "$WORKER_CPUS" >"$STATE/worker-cpus"
    start_node head --head --num-cpus="$HEAD_CPUS" --port="$PORT" \
      --dashboard-host=127.0.0.1 --dashboard-port="$DPORT" --object-store-memory=1500000000 \
      --include-dashboard=true --disable-usage-stats
    for _ in $(seq 240); do curl -sf "http://127.0.0.1:$DPORT/api/version" >/dev/null 2>&1 && break; sleep 0.5; done
    for _ in $(seq "$N"); do add_worker >/dev/null; done
    wait_nodes $((N + 1))
    echo "127.0.0.1:$PORT" >"$STATE/ray-address"
    echo "ray cluster up ($((N + 1)) nodes$([ -f "$STATE/share-nothing" ] && echo ', share-nothing')): address 127.0.0.1:$PORT, dashboard / jobs http://127.0.0.1:$DPORT"
    ;;
  add-worker)
    WORKER_CPUS=$(cat "$STATE/worker-cpus")
    name=$(add_worker)
    wait_nodes $(($(workers) + 1))  # the nodes started here and alive, a killed one gone
    echo "$name joined"
    ;;
  kill-worker)
    f="$STATE/ray-worker${2:?usage: $0 kill-worker N}.pgid"
    [ -f "$f" ] || { echo "cluster.sh: no worker node ${2}" >&2; exit 2; }
    kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
    echo "worker${2} killed"
    ;;
  down)  # every node is told at once, then given 10 s in all before SIGKILL
    pgs=()
    for f in "$STATE"/ray-worker*.pgid "$STATE/ray-head.pgid"; do
      [ -f "$f" ] || continue
      pgs+=("$(cat "$f")")
      kill -TERM -- "-${pgs[-1]}" 2>/dev/null || true
      rm -f "$f"
    done
    for _ in $(seq 40); do
      alive=0
      for pg in "${pgs[@]}"; do kill -0 -- "-$pg" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.25
    done
    for pg in "${pgs[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
    rm -f "$STATE/ray-address" "$STATE/share-nothing" "$STATE/next-worker" "$STATE/worker-cpus"
    echo "ray cluster down"
    ;;
  status)
    echo "worker nodes started here: $(workers)"
    ray status --address="127.0.0.1:$PORT" || exit 1
    ;;
  *) echo "usage: $0 up [--share-nothing] | add-worker | kill-worker N | down | status" >&2; exit 2 ;;
esac
