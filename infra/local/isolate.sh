#!/usr/bin/env bash
# Run a command as a share-nothing "node" on this machine: in its own mount namespace, with an
# empty private /tmp and every --hide folder replaced by an empty tmpfs, so the command sees
# none of the files the driver, the tests or the checkout hold. --keep folders (the Python
# environment, as an installed image would have it) stay visible even inside a hidden folder.
#   infra/local/isolate.sh [--hide DIR]... [--keep DIR]... -- CMD [ARG...]
# Needs root (or CAP_SYS_ADMIN) and util-linux `unshare`; exits 3 naming what is missing.
set -euo pipefail
hide=() keep=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hide) hide+=("$(realpath -m "$2")"); shift 2 ;;
    --keep) keep+=("$(realpath -m "$2")"); shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--hide DIR]... [--keep DIR]... -- CMD..." >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "isolate.sh: no command given" >&2; exit 2; }
command -v unshare >/dev/null || { echo "isolate.sh: unshare (util-linux) is not installed" >&2; exit 3; }
unshare --mount --propagation private true 2>/dev/null ||
  { echo "isolate.sh: cannot create a mount namespace (needs root / CAP_SYS_ADMIN)" >&2; exit 3; }

# Inside the namespace: park the kept folders on a private tmpfs, hide /tmp and the hidden
# folders under empty tmpfs mounts, then move the kept folders back to where they were.
inner='
set -euo pipefail
n_keep=$1; shift; keep=("${@:1:$n_keep}"); shift "$n_keep"
n_hide=$1; shift; hide=("${@:1:$n_hide}"); shift "$n_hide"
stage=$(mktemp -d /dev/shm/a2v-isolate.XXXXXX)
mount -t tmpfs -o size=1m a2v-stage "$stage"
for i in "${!keep[@]}"; do mkdir "$stage/$i"; mount --bind "${keep[$i]}" "$stage/$i"; done
mount -t tmpfs -o mode=1777 a2v-tmp /tmp
for d in "${hide[@]}"; do [ -d "$d" ] && mount -t tmpfs -o mode=755 a2v-hidden "$d"; done
for i in "${!keep[@]}"; do mkdir -p "${keep[$i]}"; mount --move "$stage/$i" "${keep[$i]}"; done
umount "$stage"; rmdir "$stage"
cd /
exec "$@"
'
exec unshare --mount --propagation private -- bash -c "$inner" isolate \
  "${#keep[@]}" "${keep[@]}" "${#hide[@]}" "${hide[@]}" "$@"
