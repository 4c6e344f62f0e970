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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL = SHARED / "data" / "real"
BIN = Path(sys.executable).parent

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TQDM_DISABLE", "1")


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
def ray_session(s3):
    """One local Ray for the session (4 logical CPUs so Train workers and Ray Data both fit)."""
    import ray
    import ray.data

    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def mlflow_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (sqlite + proxied artifacts) in its own process group."""
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
        ],
        d / "mlflow.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", 90)
    yield url
    stop_group(proc)


@pytest.fixture(scope="module")
def cluster2(tmp_path_factory, s3):
    """A 2-node Ray cluster on this machine: head (2 CPUs) + worker node (2 CPUs)."""
    d = tmp_path_factory.mktemp("cluster")
    port, dash = free_port(), free_port()
    env = {"PATH": f"{BIN}:{os.environ['PATH']}"}
    head = start_group(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            f"--port={port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            "--object-store-memory=1500000000",
            "--disable-usage-stats",
            "--include-dashboard=true",
        ],
        d / "head.log",
        env,
    )
    wait_http(f"http://127.0.0.1:{dash}/api/version", 120)
    worker = start_group(
        [
            str(BIN / "ray"),
            "start",
            "--block",
            f"--address=127.0.0.1:{port}",
            "--num-cpus=2",
            "--object-store-memory=1000000000",
            "--disable-usage-stats",
        ],
        d / "worker.log",
        env,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        out = subprocess.run(
            [
                str(BIN / "python"),
                "-c",
                f"import ray; ray.init(address='127.0.0.1:{port}', logging_level='ERROR');"
                "print(sum(n['Alive'] for n in ray.nodes()))",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        if out.stdout.strip().endswith("2"):
            break
        time.sleep(2)
    else:
        raise TimeoutError("second Ray node did not join")
    yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "logs": d}
    stop_group(worker)
    stop_group(head)


@pytest.fixture(scope="session")
def synth_archive(tmp_path_factory):
    """A local synthetic archive of 0.2 h (12 one-minute files) with annotations."""
    from pipelines.synth import write_archive

    d = tmp_path_factory.mktemp("archive")
    write_archive(str(d), 0.2, seed=7)
    return d


@pytest.fixture
def clean_dir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="session")
def finetuned(ray_session, synth_archive, tmp_path_factory):
    """A tiny classifier fine-tuned from scratch for a few dozen steps (enough to emit events)."""
    from a2v_core.config import FinetuneJob
    from a2v_core.config_loader import load_config
    from pipelines import finetune

    d = tmp_path_factory.mktemp("ft")
    job = load_config(
        FinetuneJob,
        Path(__file__).resolve().parents[1] / "configs/finetune/tiny.yaml",
        [
            f"data.archive={synth_archive}",
            f"data.annotations={synth_archive}/annotations.csv",
            f"run.storage_path={d}",
            "run.name=ft-label",
            "tracking.enabled=false",
            "optim.max_steps=40",
            "run.validate_every_steps=40",
            "cluster.cpus_per_worker=0.5",
            "loss.prior_prob=0.2",
            # 40 steps that also move a trained-from-scratch front end leave every probability
            # under the tuned thresholds (no events); the frozen one, the paper's, emits plenty
            "optim.freeze_frontend=true",
        ],
    )
    return finetune.run(job)["checkpoint"]
