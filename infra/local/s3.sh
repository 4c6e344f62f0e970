#!/usr/bin/env bash
# A local S3-compatible server (moto) on 127.0.0.1, started in its own process group.
#   infra/local/s3.sh up|down|env
# After `up` (which creates the bucket ${S3_BUCKET:-a2v}), `eval "$(infra/local/s3.sh env)"` sets
# the AWS variables the jobs read.
set -euo pipefail
STATE=${A2V_STATE_DIR:-.a2v-local}
PORT=${S3_PORT:-5055}
mkdir -p "$STATE"
case "${1:-env}" in
  up)
    setsid moto_server -H 127.0.0.1 -p "$PORT" >"$STATE/moto.log" 2>&1 &
    echo $! >"$STATE/moto.pgid"
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -sf -X PUT "http://127.0.0.1:$PORT/${S3_BUCKET:-a2v}" >/dev/null  # an empty bucket to start
    echo "moto S3 up on http://127.0.0.1:$PORT (pgid $(cat "$STATE/moto.pgid"))"
    ;;
  down)
    [ -f "$STATE/moto.pgid" ] && kill -- "-$(cat "$STATE/moto.pgid")" 2>/dev/null || true
    rm -f "$STATE/moto.pgid"; echo "moto S3 down"
    ;;
  env)
    cat <<ENV
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
ENV
    ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
