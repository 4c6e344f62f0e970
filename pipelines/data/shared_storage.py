"""What a multi-node cluster requires of a job's URIs.

On a KubeRay RayJob or a cluster-launcher cluster, a worker node sees the network, object
storage and the code Ray ships; never the driver's disk, temp dirs or checkout. Every URI a
worker or an actor opens must therefore be ``s3://`` or ``gs://``, and MLflow must be a server
every node reaches. A cluster whose nodes mount one file system at the same path (Slurm with
Lustre, NFS or GPFS) declares it, ``cluster.shared_paths``: local paths under it pass, every
other local path is still refused. The driver checks this right after it connects to Ray,
before any task, actor or Train worker starts, and stops naming the keys.
"""

from __future__ import annotations

import os

import ray

from a2v_core.errors import InputError
from pipelines.data import storage
from pipelines.runtime.tracking import redact_uri, tracking_uri

#: MLflow stores that live on one machine's disk
LOCAL_TRACKING_SCHEMES = ("sqlite", "file", "")


def work_leaves_driver_node() -> bool:
    """True when tasks may run on a node other than this driver's: the cluster has more than
    one alive node, or the driver's node offers no CPU (a head started with ``--num-cpus=0``,
    as in the RayJob manifests, whose workers an autoscaler adds later)."""
    me = ray.get_runtime_context().get_node_id()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    mine = next((n for n in alive if n["NodeID"] == me), None)
    return len(alive) > 1 or mine is None or not mine.get("Resources", {}).get("CPU", 0)


def tracking_is_shared(uri: str) -> bool:
    """An MLflow URI every node reaches: a server or a database, not a file on one disk."""
    if uri == "databricks" or uri.startswith("databricks://"):
        return True
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    return scheme.split("+", 1)[0] not in LOCAL_TRACKING_SCHEMES


def under_shared(uri: str, shared: list[str]) -> bool:
    """A local path inside one of the ``shared`` folders (never by a ``..`` detour)."""
    if storage.is_remote(uri):
        return False
    path = os.path.normpath(storage.absolute(uri))
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in shared)


def problems(
    uris: dict[str, str | None], tracking: str | None, shared: list[str] | None = None
) -> list[str]:
    """One line per key that the cluster cannot serve (empty = fine); ``shared``: the folders
    every node mounts (``cluster.shared_paths``)."""
    shared = list(shared or [])
    where = f" or under cluster.shared_paths {shared}" if shared else ""
    out = [
        f"{key} must be s3:// or gs://{where} on a multi-node cluster (got {uri!r}): its nodes "
        "share no disk with the driver"
        + ("" if shared else " (a file system every node mounts: --set cluster.shared_paths=[DIR])")
        for key, uri in uris.items()
        if uri and not storage.is_remote(uri) and not under_shared(uri, shared)
    ]
    out += [
        f"cluster.shared_paths: {root} does not exist on the driver's node"
        for root in shared
        if not os.path.isdir(root)
    ]
    if tracking is not None and not tracking_is_shared(tracking):
        out.append(
            f"tracking.uri must be an MLflow server (http[s]://...) on a multi-node cluster "
            f"(got {redact_uri(tracking)!r}): a sqlite or file store is on the driver's disk only; "
            "set MLFLOW_TRACKING_URI or --set tracking.uri=..., or tracking.enabled=false"
        )
    return out


def require_shared(
    uris: dict[str, str | None], tracking: str | None = None, shared: list[str] | None = None
) -> None:
    """Stop the job (before any Ray work) if it runs on several nodes and a worker-side URI is
    local and not under a ``shared`` folder. ``uris``: config key -> URI that workers or actors
    open; ``tracking``: the MLflow URI that Train workers log to (None when they do not)."""
    if not work_leaves_driver_node():
        return
    found = problems(uris, None if tracking is None else tracking_uri(tracking), shared)
    if found:
        raise InputError("\n  ".join(found))
