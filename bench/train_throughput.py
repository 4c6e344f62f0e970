"""Pretraining throughput on Ray Train: audio seconds per second with 1 vs 2 workers, and the
fraction of step time spent waiting for data, for the tiny preset and a base-width model.

    python bench/train_throughput.py [--steps 12] [--cpus 2]

Numbers come from the job's own MLflow metrics (audio_hours_per_s, data_wait_frac), averaged
over the logged intervals after the first; the baseline is 1 worker in this same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2v_core.config import PretrainJob  # noqa: E402
from a2v_core.config_loader import load_config  # noqa: E402
from pipelines import pretrain  # noqa: E402
from pipelines.synth import write_archive  # noqa: E402


def measure(
    archive: str, d: str, preset_args: list[str], workers: int, steps: int
) -> tuple[float, float]:
    import mlflow

    uri = f"sqlite:///{d}/m.db"
    name = f"bench-{abs(hash((tuple(preset_args), workers)))}"
    job = load_config(
        PretrainJob,
        ROOT / "configs/pretrain/tiny.yaml",
        [
            f"data.archive={archive}",
            f"run.storage_path={d}/runs",
            f"run.name={name}",
            f"tracking.uri={uri}",
            f"optim.max_steps={steps}",
            "run.log_every_steps=2",
            f"run.checkpoint_every_steps={steps}",
            f"cluster.num_workers={workers}",
            "cluster.cpus_per_worker=0.5",
            "cluster.torch_threads=0",
            *preset_args,
        ],
    )
    res = pretrain.run(job)
    client = mlflow.MlflowClient(uri)
    speed = [m.value for m in client.get_metric_history(res["mlflow_run_id"], "audio_hours_per_s")][
        1:
    ]
    wait = [m.value for m in client.get_metric_history(res["mlflow_run_id"], "data_wait_frac")][1:]
    return 3600 * sum(speed) / len(speed), sum(wait) / len(wait)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    import ray

    from pipelines.runtime.ray_init import local_ray_options

    ray.init(
        **local_ray_options(),  # workers ask their own State API
        num_cpus=args.cpus + 1,
        log_to_driver=False,
        logging_level="ERROR",
    )
    with tempfile.TemporaryDirectory() as d:
        write_archive(f"{d}/archive", 0.2, seed=0)
        presets = {
            "tiny": [],
            "base-width": [
                "model.preset=base",
                "model.depth=2",
                "model.average_top_k_layers=2",
                "model.clone_batch=2",
                "optim.batch_size=1",
            ],
        }
        print(f"{'model':<12}{'workers':>8}{'audio s/s':>11}{'data wait':>11}{'vs 1 worker':>13}")
        for name, extra in presets.items():
            base = None
            for workers in (1, 2):
                speed, wait = measure(f"{d}/archive", d, extra, workers, args.steps)
                base = base or speed
                print(f"{name:<12}{workers:>8}{speed:>11.1f}{wait:>10.1%}{speed / base:>12.2f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()
