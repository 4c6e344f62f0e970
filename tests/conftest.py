"""Real services for the tests, started here on free ports and stopped by process group:
a moto S3 server, one local Ray per session, MLflow sqlite stores, an ``mlflow server``,
and a 2-node Ray cluster (``ray start --head`` + ``ray start --address``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.helpers")  # their asserts explain themselves too

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL = SHARED / "data" / "real"
BIN = Path(sys.executable).parent

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TQDM_DISABLE", "1")
# Ray Train's controller polls its workers every 2 s: a finished fit waited ~1 s for the next
# poll (the suite runs ~25 fits; 0.25 s saves ~2 s each). Set before any Ray starts, so local
# Ray, subprocess drivers and the share-nothing nodes (cluster.sh inherits it) all use it.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")


PLANTED_AWS_SECRET = "planted-aws-91c2e4"  # the share-nothing nodes' AWS secret (moto takes any)


def files_holding(root: Path, secrets: tuple[str, ...]) -> list[str]:
    """'path: secret' for every file under ``root`` holding one of ``secrets``."""
    hits = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            hits += [f"{f}: {s}" for s in secrets if s.encode() in data]
    return hits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def start_group(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def stop_group(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A moto S3 server; sets the AWS variables (before Ray starts, so workers inherit them)."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = start_group([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(endpoint, 30)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.mkdir("a2v-test")
    yield {"endpoint": endpoint, "bucket": "a2v-test", "fs": fs}
    stop_group(proc)


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    """A GCS emulator (gcp-storage-emulator, in memory) with one bucket; sets
    STORAGE_EMULATOR_HOST before Ray starts, so workers inherit it."""
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "gcs.log"
    cmd = [str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = start_group([*cmd, "--default-bucket", "a2v-gcs", "--in-memory", "-q"], log)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(f"{endpoint}/storage/v1/b", 30)  # the bucket listing answers 200 once up
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    yield {"endpoint": endpoint, "bucket": "a2v-gcs"}
    os.environ.pop("STORAGE_EMULATOR_HOST", None)
    stop_group(proc)


@pytest.fixture(scope="session")
def ray_session(s3, gcs):
    """One local Ray for the session (4 logical CPUs so Train workers and Ray Data both fit),
    with the options init_ray starts one with (its workers ask their own State API)."""
    import ray
    import ray.data

    from pipelines.runtime.ray_init import local_ray_options

    ray.init(
        **local_ray_options(),
        num_cpus=4,
        log_to_driver=False,
        logging_level="ERROR",
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_env(ray_session) -> dict[str, str]:
    """The environment for a subprocess driver (``python -m pipelines.<job>`` in a test) that
    joins the session's Ray (init_ray reads RAY_ADDRESS) instead of starting its own: a test
    that is not about starting Ray pays no start. Not set in this process: Ray's job client
    would take it for the address of every cluster."""
    return {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}


@pytest.fixture
def mlflow_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (sqlite + proxied artifacts) in its own process group, one for
    the session (one worker process: a test's requests come one at a time, and each of the
    default four costs seconds of start-up)."""
    d = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = start_group(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{d / 'srv.db'}",
            "--artifacts-destination",
            str(d / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        d / "mlflow.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", 90)
    yield url
    stop_group(proc)


class ShareNothingCluster:
    """``infra/local/cluster.sh up --share-nothing``: a head with 0 CPUs and worker nodes in
    their own mount namespaces (empty private /tmp, checkout hidden). Jobs reach it only as a
    laptop would: ``ray job submit --working-dir`` over the dashboard's HTTP API."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.dashboard = f"http://127.0.0.1:{env['RAY_DASHBOARD_PORT']}"
        self.shared: Path | None = None  # the folder every node mounts (A2V_SHARE)

    def script(self, *args: str, timeout_s: float = 300) -> str:
        out = subprocess.run(
            ["bash", str(ROOT / "infra/local/cluster.sh"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            timeout=timeout_s,
        )
        if out.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard)

    def submit(self, entry: list[str], env_vars: dict[str, str] | None = None) -> str:
        """Submit ``entry`` with this checkout as the working dir (the only way code reaches
        the nodes); returns the job id. A fresh head answers 'no available agent' for a while."""
        import shlex

        deadline = time.time() + 120
        while True:
            try:
                return self.client().submit_job(
                    entrypoint=shlex.join(entry),
                    runtime_env={"working_dir": str(ROOT), "env_vars": env_vars or {}},
                )
            except RuntimeError as err:
                if "No available agent" not in str(err) or time.time() > deadline:
                    raise
                time.sleep(3)

    def wait(self, job_id: str, timeout_s: float = 900) -> tuple[str, str]:
        """(final status, logs) of a job."""
        from ray.job_submission import JobStatus

        client = self.client()
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            status = client.get_job_status(job_id)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                return str(status), client.get_job_logs(job_id)
            time.sleep(0.5)
        client.stop_job(job_id)
        return "TIMEOUT", client.get_job_logs(job_id)

    def run(self, entry: list[str], **kw) -> str:
        """Submit, wait, assert success; returns the logs."""
        status, logs = self.wait(self.submit(entry, **kw))
        assert status == "SUCCEEDED", f"job {status}:\n{logs[-6000:]}"
        return logs

    def node_ids(self) -> dict[str, bool]:
        """node id -> alive, from the dashboard."""
        import json

        with urllib.request.urlopen(f"{self.dashboard}/nodes?view=summary", timeout=10) as r:
            nodes = json.load(r)["data"]["summary"]
        return {n["raylet"]["nodeId"]: n["raylet"]["state"] == "ALIVE" for n in nodes}


@pytest.fixture(scope="session")
def share_nothing(tmp_path_factory, s3):
    """A share-nothing Ray cluster of a 0-CPU head and 2 worker nodes (2 CPUs each), started
    after the AWS variables are set so that every node reaches the moto server, once for the
    session (tests/e2e/test_share_nothing.py and test_shared_fs.py). Its nodes share exactly one
    folder, ``.shared`` (bind-mounted at the same path: a Slurm cluster's Lustre)."""
    check = subprocess.run(
        ["bash", str(ROOT / "infra/local/isolate.sh"), "--", "true"], capture_output=True, text=True
    )
    if check.returncode == 3:
        pytest.skip(f"share-nothing nodes need a mount namespace: {check.stderr.strip()}")
    assert check.returncode == 0, check.stderr
    state = tmp_path_factory.mktemp("share-nothing")
    shared = tmp_path_factory.mktemp("shared-fs")  # the one folder every node mounts
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "A2V_STATE_DIR": str(state),
        "RAY_HEAD_PORT": str(free_port()),
        "RAY_DASHBOARD_PORT": str(free_port()),
        "RAY_AUTH_MODE": "disabled",
        "A2V_SHARE": str(shared),
        # every node and job driver holds it; tests/e2e's last test searches the outputs for it
        "AWS_SECRET_ACCESS_KEY": PLANTED_AWS_SECRET,
        # a killed node is declared dead after ~3 s instead of ~30 s
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    cluster = ShareNothingCluster(env)
    cluster.shared = shared
    try:
        cluster.script("up", "--share-nothing")
        yield cluster
    finally:
        cluster.script("down", timeout_s=120)


@pytest.fixture(scope="session")
def synth_archive(tmp_path_factory):
    """A local synthetic archive of 0.2 h (12 one-minute files) with annotations."""
    from pipelines.synth import write_archive

    d = tmp_path_factory.mktemp("archive")
    write_archive(str(d), 0.2, seed=7)
    return d


def pre_job(archive: str, storage_path: str, name: str, uri: str, *extra: str):
    """A tiny pretraining job for tests (half a CPU per worker, a loss line every 5 steps)."""
    from a2v_core.config import PretrainJob
    from a2v_core.config_loader import load_config

    return load_config(
        PretrainJob,
        ROOT / "configs/pretrain/tiny.yaml",
        [
            f"data.archive={archive}",
            f"run.storage_path={storage_path}",
            f"run.name={name}",
            f"tracking.uri={uri}",
            "cluster.cpus_per_worker=0.5",
            "run.log_every_steps=5",
            *extra,
        ],
    )


@pytest.fixture(scope="session")
def s3_archive(s3, synth_archive):
    from pipelines.data import storage

    uri = "s3://a2v-test/train-archive"
    storage.upload_dir(synth_archive, uri)
    return uri


@pytest.fixture(scope="session")
def s3_pretrained(ray_session, s3_archive, tmp_path_factory):
    """Tiny pretraining, 2 workers, archive and checkpoints on moto S3 (``s3://a2v-test/runs/
    pre-s3``, checkpoints every 10 steps, those of steps 20 and 30 kept)."""
    from pipelines import pretrain

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlf') / 'mlflow.db'}"
    job = pre_job(
        s3_archive,
        "s3://a2v-test/runs",
        "pre-s3",
        uri,
        "cluster.num_workers=2",
        "cluster.torch_threads=1",  # two workers on two cores: no oversubscribed threads
        "optim.max_steps=30",
        "run.checkpoint_every_steps=10",
    )
    res = pretrain.run(job)
    return {"job": job, "result": res, "uri": uri, "run_dir": "s3://a2v-test/runs/pre-s3"}


@pytest.fixture
def clean_dir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


FIXED_MODEL = ROOT / "tests/data/fixed/model"


@pytest.fixture(scope="session")
def finetuned(ray_session, tmp_path_factory) -> str:
    """A copy of the committed fine-tuned tiny checkpoint (tests/data/fixed/model: 8 synthetic
    classes, val macro AP 0.83, tuned per-class thresholds 0.2-0.7), so that no test writes into
    the repo. Fine-tuning itself runs in the tests of tests/pipelines/test_training.py, the
    share-nothing module and the sweeps; a test that labels needs a model, not a training run.
    Label tests that want events on every file set one low explicit threshold."""
    d = tmp_path_factory.mktemp("ft") / "model"
    shutil.copytree(FIXED_MODEL, d)
    return str(d)


SERVICES = {"ray_session", "s3", "gcs", "mlflow_server", "share_nothing"}


def pytest_collection_modifyitems(items):
    """A test that needs Ray, moto, the GCS emulator or an MLflow server is slow by definition:
    ``make test-fast`` (-m "not slow") starts none of them."""
    for item in items:
        if SERVICES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
