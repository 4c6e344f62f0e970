"""``infra/slurm/a2v.sbatch`` run as Slurm would run it, on this machine: ``srun`` and
``scontrol`` are stand-ins (tests/e2e/fake_slurm) that run each step as its node, the first
node as the batch host and the others in their own mount namespaces, which see none of this
machine's /tmp except the one shared folder (the allocation's Lustre). The script starts Ray
(head + 2 workers) and an MLflow server on the head, labels an archive that lives only on the
shared folder with actors on the worker nodes, and stops everything it started."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time

import pandas as pd
import pytest

from tests.conftest import FIXED_MODEL, ROOT, free_port

pytestmark = pytest.mark.slow

FAKE = ROOT / "tests/e2e/fake_slurm"


def slurm_env(shared, nodes: list[str], nodelist: str, cpus: int, port: int) -> dict[str, str]:
    """An allocation of ``nodes`` (the first runs the script) whose one shared folder is
    ``shared``, as the stand-in srun / scontrol read it."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))},
        "PATH": f"{FAKE}:{os.environ['PATH']}",
        "FAKE_SLURM_NODES": " ".join(nodes),
        "FAKE_SLURM_KEEP": str(shared),
        "SLURM_JOB_NODELIST": nodelist,
        "SLURM_CPUS_PER_TASK": str(cpus),
        "SLURM_SUBMIT_DIR": str(ROOT),
        "A2V_SHARED": str(shared),
        "A2V_VENV": "/nonexistent",  # the test's Python is on PATH already
        "RAY_PORT": str(port),
    }


def test_the_sbatch_script_labels_an_archive_on_the_shared_folder(synth_archive, tmp_path):
    check = subprocess.run(
        ["bash", str(ROOT / "infra/local/isolate.sh"), "--", "true"], capture_output=True, text=True
    )
    if check.returncode == 3:
        pytest.skip(f"the worker nodes need a mount namespace: {check.stderr.strip()}")
    shared = tmp_path / "lustre"
    shutil.copytree(synth_archive, shared / "archive")
    shutil.copytree(FIXED_MODEL, shared / "model")
    port = free_port()
    env = slurm_env(shared, ["node0", "node1", "node2"], "node[0-2]", cpus=1, port=port)
    env["MLFLOW_PORT"] = str(free_port())
    t0 = time.time()
    out = subprocess.run(
        ["bash", str(ROOT / "infra/slurm/a2v.sbatch"), "label"]
        + ["--model", f"{shared}/model", "--archive", f"{shared}/archive"]
        + ["--out", f"{shared}/labels", "--threshold", "0.03"]
        + ["--set", "cluster.num_actors=2", "--set", "cluster.cpus_per_worker=1"]
        + ["--set", "cluster.placement_strategy=SPREAD"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        start_new_session=True,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    assert "[slurm] 3 of 3 nodes up; MLflow: server on node0" in log
    summary = json.loads((shared / "labels/run.json").read_text())
    assert summary["files_processed"] == 12 and summary["errors_by_type"] == {}
    assert len(summary["chunks_by_node"]) == 2, summary["chunks_by_node"]  # the two workers
    assert summary["config"]["cluster"]["shared_paths"] == [str(shared)]
    with sqlite3.connect(shared / "mlflow/mlflow.db") as db:  # the server the script started
        query = "select count(*) from tags where key = 'a2v.job' and value = 'label'"
        assert db.execute(query).fetchone()[0] == 1
    # everything it started is gone: the head answers no more
    gone = subprocess.run(
        ["ray", "status", f"--address=127.0.0.1:{port}"], capture_output=True, env=env, timeout=60
    )
    assert gone.returncode != 0
    print(f"\n[slurm] sbatch label on 3 nodes: {time.time() - t0:.0f} s")


def test_the_sbatch_script_runs_the_manifest_tool_job(synth_archive, tmp_path):
    """A tool job takes no --set: the script runs it as typed (it appended --set to every job,
    so `sbatch ... manifest` failed on its arguments)."""
    shared = tmp_path / "lustre"
    shutil.copytree(synth_archive, shared / "archive")
    env = slurm_env(shared, ["node0"], "node0", cpus=2, port=free_port())
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{shared}/unused.db"  # no server: nothing tracked
    out = subprocess.run(
        ["bash", str(ROOT / "infra/slurm/a2v.sbatch"), "manifest"]
        + ["--archive", f"{shared}/archive", "--out", f"{shared}/manifest.parquet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        start_new_session=True,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    manifest = pd.read_parquet(shared / "manifest.parquet")
    assert len(manifest) == 12 and (manifest["error_type"] == "").all()
