"""URI -> filesystem for every job: local paths, ``file://``, ``s3://`` and ``gs://``.

S3 uses the standard AWS variables plus ``AWS_ENDPOINT_URL`` for S3-compatible stores
(MinIO, moto, Ceph). GCS uses Application Default Credentials (``gcloud auth
application-default login``, a service account key in ``GOOGLE_APPLICATION_CREDENTIALS``, or
the node's metadata server) and ``STORAGE_EMULATOR_HOST`` for an emulator (anonymous then).
Paths returned alongside a filesystem never carry the scheme.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fsspec

SCHEMES = ("", "file", "s3", "gs")
#: object stores: every node of a cluster reaches them
REMOTE = ("s3", "gs")
#: other spellings of a served scheme
ALIASES = {"gcs": "gs"}


def split_uri(uri: str) -> tuple[str, str]:
    """'s3://b/k' -> ('s3', 'b/k'); '/x' or 'x' -> ('', abs path); 'file:///x' -> ('', '/x')."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        scheme = ALIASES.get(scheme, scheme)
        if scheme not in SCHEMES:
            raise ValueError(
                f"unsupported URI scheme '{scheme}://' in {uri!r}; use a local path, file://, "
                "s3:// or gs://"
            )
        if scheme == "file":
            return "", str(Path(rest).resolve())
        return scheme, rest.rstrip("/")
    return "", str(Path(uri).resolve())


def absolute(uri: str | None) -> str | None:
    """Local paths -> absolute paths (Ray workers run in another directory); URIs unchanged.
    Raises ValueError for a scheme that is not served."""
    if uri is None:
        return uri
    scheme, path = split_uri(uri)
    return uri if scheme else path


def is_remote(uri: str) -> bool:
    return split_uri(uri)[0] in REMOTE


def emulator_host() -> str | None:
    """The GCS emulator's address (``STORAGE_EMULATOR_HOST``) as an http(s) URL, if set."""
    host = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if host in ("", "default"):
        return None
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


def _gcs() -> fsspec.AbstractFileSystem:
    # gcsfs' default class (ExtendedGcsFileSystem) asks a gRPC control API for each bucket's
    # layout first; plain GCSFileSystem speaks only the JSON API, which real GCS and
    # emulators both serve, and reads hierarchical-namespace buckets all the same
    from gcsfs.core import GCSFileSystem

    token = "anon" if emulator_host() else None
    return GCSFileSystem(token=token, use_listings_cache=False)


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for a URI and the path inside it."""
    scheme, path = split_uri(uri)
    if scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        # no listings cache: a listing must show what other processes wrote since (resume
        # journals, commit markers of another run, a driver that polls a job's outputs)
        kwargs = {"use_listings_cache": False}
        fs = (
            fsspec.filesystem("s3", endpoint_url=endpoint, **kwargs)
            if endpoint
            else (fsspec.filesystem("s3", **kwargs))
        )
    elif scheme == "gs":
        fs = _gcs()
    else:
        fs = fsspec.filesystem("file")
    return fs, path


def open_member(fs: fsspec.AbstractFileSystem, root: str, rel: str, size: int | None = None):
    """Open ``rel`` of the archive at ``root`` on ``fs`` (``filesystem(archive)``) for
    reading, the one way every job reads an archive's files; ``size``: the object's size as
    listed, when known."""
    full = f"{root.rstrip('/')}/{rel}"
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if not any(p in ("s3", "s3a", "gs", "gcs") for p in protocols):
        return fs.open(full, "rb")
    # Small read-ahead blocks: a chunk read fetches ~2 MB, never the whole object. s3fs takes
    # the size from the listing instead of a HEAD request per object: one round trip less per
    # file (within noise against moto on localhost, 120 files). An object gone since the
    # listing then fails on its first GET ("unreadable", tested).
    kwargs = {"size": size} if size is not None and "s3" in protocols else {}
    return fs.open(full, "rb", block_size=2 * 1024 * 1024, **kwargs)


def join(uri: str, *parts: str) -> str:
    if "://" in uri:
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def list_files(uri: str, extensions: list[str]) -> list[tuple[str, int]]:
    """Recursive listing of files whose extension (case-insensitive) is in ``extensions``:
    (path relative to ``uri``, size in bytes), sorted. Raises FileNotFoundError if ``uri``
    does not exist."""
    return [(rel, size) for rel, size, _ in list_versions(uri, extensions)]


def list_versions(uri: str, extensions: list[str]) -> list[tuple[str, int, str]]:
    """``list_files`` with each file's version: the S3 ETag, else the modification time (a
    file rewritten in place gets a new one)."""
    fs, root = filesystem(uri)
    if not fs.exists(root):
        raise FileNotFoundError(f"archive not found: {uri}")
    exts = {e.lower().lstrip(".") for e in extensions}
    prefix = root.rstrip("/") + "/"
    out = []
    if fs.isfile(root):  # one recording: listed by its name, relative to its folder
        found = {root: fs.info(root)}
        prefix = root.rsplit("/", 1)[0] + "/"
    else:
        found = fs.find(root, detail=True)
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        if path.rsplit(".", 1)[-1].lower() in exts or not exts:
            # plain prefix strip: relpath() would consult the cwd, which a job may not have
            rel = path[len(prefix) :] if path.startswith(prefix) else path
            # S3 ETag, GCS generation (new on every write), else the modification time
            version = (
                info.get("ETag")
                or info.get("generation")
                or info.get("mtime")
                or info.get("LastModified")
                or ""
            )
            out.append((rel, int(info.get("size") or 0), str(version).strip('"')))
    return sorted(out)


def is_file(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.isfile(path)


def parent(uri: str) -> str:
    """The folder holding ``uri`` (``s3://b/a/x.wav`` -> ``s3://b/a``)."""
    if "://" in uri:
        return uri.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(split_uri(uri)[1])


def list_all(uri: str) -> list[tuple[str, int]]:
    """Every file under ``uri`` (relative path, size)."""
    return list_files(uri, [])


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: a temp name then a rename locally; a single PUT on object stores."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        fs.pipe_file(path, data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def remove(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def upload_dir(local_dir: str | Path, uri: str) -> None:
    """Copy a local directory to ``uri`` (a plain copy when ``uri`` is local)."""
    fs, path = filesystem(uri)
    if not is_remote(uri):
        shutil.copytree(local_dir, path, dirs_exist_ok=True)
        return
    for f in Path(local_dir).rglob("*"):
        if f.is_file():
            fs.put_file(str(f), posixpath.join(path, f.relative_to(local_dir).as_posix()))


def local_copy(uri: str) -> str:
    """A local directory with the contents of ``uri`` (itself when already local). A remote
    copy lands in a new temp dir the caller owns; prefer ``fetched`` which removes it."""
    if not is_remote(uri):
        return split_uri(uri)[1]
    fs, path = filesystem(uri)
    dest = tempfile.mkdtemp(prefix="a2v-")
    fs.get(path.rstrip("/") + "/", dest, recursive=True)
    return dest


@contextlib.contextmanager
def fetched(uri: str) -> Iterator[str]:
    """``with fetched(uri) as d``: a local directory with the contents of ``uri`` on *this*
    node (a node of a cluster sees none of the driver's disk), removed afterwards when it is
    a copy."""
    local = local_copy(uri)
    try:
        yield local
    finally:
        if is_remote(uri):
            shutil.rmtree(local, ignore_errors=True)


def train_storage(uri: str):
    """What Ray Train / Tune's RunConfig takes as ``(storage_path, storage_filesystem)``: an
    absolute local path, the ``s3://`` URI itself (pyarrow picks up AWS_ENDPOINT_URL; never
    pass a filesystem too), or for ``gs://`` the bucket path with pyarrow's GCS filesystem
    (default credentials, or anonymous at ``STORAGE_EMULATOR_HOST``)."""
    scheme, path = split_uri(uri)
    if scheme == "s3":
        return uri, None
    if scheme == "gs":
        import pyarrow.fs as pafs

        host = emulator_host()
        opts = {}
        if host:
            proto, addr = host.split("://", 1)
            opts = {"anonymous": True, "endpoint_override": addr.rstrip("/"), "scheme": proto}
        return path, pafs.GcsFileSystem(**opts)
    return path, None
