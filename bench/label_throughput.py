"""End-to-end labelling throughput (x real time) vs the bare model forward over the same chunks
in one process, with 1 and 2 predictor actors.

    python bench/label_throughput.py --model demo_out/runs/finetune-tiny/best [--hours 1] [--long-hours 2]

The baseline decodes every chunk with a2v_core and runs the classifier in this process (no Ray,
no outputs); the pipeline number is `a2v label` end to end (listing, Ray Data, actors, event
merging, Parquet + Raven writing). Goal: the pipeline keeps >= 0.8x of the bare forward. A job
starts its actors and loads the model once (~2 s here), so an archive much shorter than an hour
measures that start-up rather than the steady state of an archive-sized job.
With ``--long-hours H`` it also labels one H-hour file and one 10-minute file, each in its own
process tree, and prints the largest per-process peak of private memory for both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2v_core.audio import iter_chunks  # noqa: E402
from a2v_core.checkpoint import load_classifier  # noqa: E402
from a2v_core.config import LabelJob  # noqa: E402
from a2v_core.config_loader import load_config  # noqa: E402
from pipelines import label  # noqa: E402
from pipelines.synth import write_archive  # noqa: E402


def bare_forward(model_dir: str, archive: str, threads: int) -> float:
    torch.set_num_threads(threads)
    model, _ = load_classifier(model_dir)
    t = time.perf_counter()
    audio_s, batch = 0.0, []
    for f in sorted(Path(archive).rglob("*.wav")):
        with open(f, "rb") as fh:
            for c in iter_chunks(fh, 10.0, 8000):
                batch.append(c.audio)
                audio_s += c.valid_samples / 8000
                if len(batch) == 8:
                    with torch.no_grad():
                        torch.sigmoid(model(torch.from_numpy(np.stack(batch))))
                    batch = []
    if batch:
        with torch.no_grad():
            torch.sigmoid(model(torch.from_numpy(np.stack(batch))))
    return audio_s / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--long-hours", type=float, default=0.0, help="0 = skip the memory run")
    args = ap.parse_args()
    import ray

    from pipelines.runtime.ray_init import local_ray_options

    ray.init(
        **local_ray_options(),  # workers ask their own State API
        num_cpus=2,
        log_to_driver=False,
        logging_level="ERROR",
    )
    with tempfile.TemporaryDirectory() as d:
        write_archive(f"{d}/archive", args.hours, seed=5)
        base = bare_forward(args.model, f"{d}/archive", threads=1)
        print(f"bare forward, 1 process 1 thread: {base:.0f}x real time")
        for actors in (1, 2):
            job = load_config(
                LabelJob,
                ROOT / "configs/label/default.yaml",
                [
                    f"model={args.model}",
                    f"data.archive={d}/archive",
                    f"out={d}/out{actors}",
                    "tracking.enabled=false",
                    f"cluster.num_actors={actors}",
                    "cluster.cpus_per_worker=0.5",
                ],
            )
            label.run(job)  # warm-up: worker start-up and imports are not the steady state
            job.overwrite = True
            s = label.run(job)
            print(
                f"pipeline, {actors} actor(s): {s['x_real_time']:.0f}x real time = {s['x_real_time'] / base:.2f}x bare"
            )
    ray.shutdown()
    if args.long_hours:
        long_file_memory(args.model, args.long_hours)


def long_file_memory(model: str, hours: float) -> None:
    from tests.pipelines.test_label_memory import peak_anon_mib
    from tests.pipelines.test_memory import write_long_flac

    with tempfile.TemporaryDirectory() as d:
        peaks = {}
        for h in (10 / 60, hours):
            (Path(d) / f"a{h}").mkdir()
            write_long_flac(Path(d) / f"a{h}" / "one.flac", h)
            t0 = time.perf_counter()
            peaks[h], chunks = peak_anon_mib(model, Path(d) / f"a{h}", Path(d) / f"o{h}")
            print(
                f"one {h:.2f} h file: {chunks} chunks in {time.perf_counter() - t0:.0f} s, "
                f"largest per-process peak private memory {peaks[h]:.0f} MiB"
            )
        print(f"peak growth {hours:g} h vs 10 min: {peaks[hours] - peaks[10 / 60]:+.0f} MiB")


if __name__ == "__main__":
    main()
