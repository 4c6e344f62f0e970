"""Linear-probe benchmark: does the representation improve as pretraining goes on?

    python bench/probe.py --out outputs/probe                  # tiny, 2 cores, about an hour
    python bench/probe.py --out outputs/probe-quick --steps 0,50,200 --hours 0.2   # minutes
    python bench/probe.py --out outputs/probe-mine --pretrain-run s3://bucket/runs/pretrain-large \\
        --steps 0,5000,10000                      # the kept checkpoints of your own run
    python bench/probe.py --out outputs/probe-gy6or6 --archive DIR --annotations DIR/annotations.csv \
        --test-files _260312_ --drop-labels=-,x --set model.sample_rate_hz=32000 \
        --pretrain-run outputs/fewshot-gy6or6/runs/fewshot-pretrain2000-KEY --steps 0,1000,2000
                         # your labelled recordings, split by group as bench/fewshot.py splits them
    python bench/probe.py --out s3://bucket/probe --address auto --steps 0,2000,10000,40000 \\
        --hours 20 --set cluster.num_workers=4 --set cluster.use_gpu=true        # a cluster

One tiny pretraining run on a synthetic archive keeps its checkpoint at every requested step
(step 0 is the random initialisation with the run's seed). For each, the student encoder's
frame features (the averaged FFN outputs the fine-tuning head reads) are computed, frozen, on
the training archive (the labelled split) and on a held-out archive with other seeds; a
linear probe (scikit-learn logistic regression, one per class, on standardised features) is
fitted on the first and scored by frame macro AP on the second. A log-mel baseline at the
same 200 Hz frame rate (librosa, 64 bands, 32 ms window) goes through the same probe. Beside
each step: the masked-prediction loss and the teacher-target spread on held-out audio (the
same masks for every step) and the share of the teacher that is still its random initialisation
(``teacher_init``, from the EMA schedule), so a flat probe can be told from a collapsed,
target-less or teacher-less run.

``--archive DIR_OR_URI --annotations TABLE --test-files REGEX``: your labelled recordings instead
of the synthetic archive, split by groups of recordings exactly as ``bench/fewshot.py`` splits
them (``bench.archive_split``: the probe fits on the training part, scores on the test part).

The real recordings in ``../shared/data/real/`` hold one file whose labels allow a probe
(spinetail, 19.5 s, classes SP and CRER): a leave-one-chunk-out probe over its two chunks, reported
as ``real_ap`` (few hundred labelled frames: read it as a sanity check, not a score).

Every stage is skipped when its output exists (pretraining, when its run holds a checkpoint at
every requested step), so an interrupted run continues. Prints one
table and writes ``<out>/probe.csv`` / ``probe.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from a2v_core import annotations
from a2v_core.checkpoint import encoder_state
from a2v_core.config import ModelConfig, PretrainJob
from a2v_core.config_loader import build_config, load_config
from a2v_core.encoder import flush_denormals
from a2v_core.finetune import FrameClassifier, load_pretrained_encoder
from a2v_core.metrics import frame_metrics
from a2v_core.pretrain import Data2VecPretrainer, teacher_init_share
from a2v_core.redact import drop_masked, redact_uri
from pipelines import pretrain
from pipelines.data import inputs, storage
from pipelines.data.datasource import good_chunks, read_chunks
from pipelines.data.finetune_data import batch_targets
from pipelines.runtime.ray_init import init_ray
from pipelines.runtime.run_dir import CONFIG, checkpoints_by_step
from pipelines.runtime.run_dir import run_dir as run_dir_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/probe.py`
from bench.archive_split import bench_parts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"


class Clips:
    """The chunks of an archive at the model rate with their frame targets (padding cut)."""

    def __init__(self, audio: np.ndarray, targets: list[np.ndarray], classes: list[str]):
        self.audio, self.targets, self.classes = audio, targets, classes

    @property
    def y(self) -> np.ndarray:
        return np.concatenate(self.targets)

    def valid(self, feats: np.ndarray) -> np.ndarray:
        """(N, T, D) per-chunk features -> (frames, D) of the frames that hold audio."""
        return np.concatenate([f[: len(t)] for f, t in zip(feats, self.targets, strict=True)])


def read_clips(job: PretrainJob, archive: str, events: pd.DataFrame, classes: list[str]) -> Clips:
    """Every chunk of ``archive`` through the pipeline's own read (Ray Data, the chunks
    training sees) with its frame targets (``batch_targets``, as fine-tuning builds them)."""
    data = job.data.model_copy(update={"archive": archive})
    files = inputs.archive_files(archive, data.extensions)
    by_file = {f: g for f, g in events.groupby("file")}
    rows = {}
    for b in good_chunks(read_chunks(data, files, read_only=True)).iter_batches(
        batch_size=64, batch_format="numpy"
    ):
        y = batch_targets(by_file, classes, b["path"], b["offset_s"], job)
        for p, o, a, t, d in zip(
            b["path"], b["offset_s"], b["audio"], y, b["duration_s"], strict=True
        ):
            rows[(str(p), float(o))] = (a, t[: math.ceil(d * job.model.frame_rate_hz)])
    ordered = [rows[k] for k in sorted(rows)]  # Ray Data's order varies from run to run
    return Clips(np.stack([a for a, _ in ordered]), [t for _, t in ordered], classes)


def archive_clips(job: PretrainJob, archive: str, classes: list[str] | None = None) -> Clips:
    events = inputs.read_annotations(storage.join(archive, "annotations.csv"))
    return read_clips(job, archive, events, classes or annotations.class_list(events))


#: Where along the encoder features are tapped: ``ffn`` is what the fine-tuning head reads (the
#: averaged FFN outputs, the default row); the others tell where information is kept or lost.
TAPS = ("ffn", "frontend", "local", "block")


def _tapped(clf: FrameClassifier, audio: torch.Tensor, tap: str) -> torch.Tensor:
    if tap == "ffn":
        return clf.embed(audio)
    enc = clf.encoder
    x = enc.local.frontend(audio)  # Sinc + conv stack (B, T, C)
    if tap == "frontend":
        return x
    x = enc.local.project(x)  # LayerNorm + Linear into the encoder width
    if tap == "local":
        return x
    return enc.context(x).x  # the last block's output (after its LayerNorm)


@torch.no_grad()
def encoder_features(
    model: ModelConfig, encoder_state: dict | None, clips: Clips, tap: str = "ffn"
) -> np.ndarray:
    clf = FrameClassifier(model, n_classes=1)
    if encoder_state is not None:
        load_pretrained_encoder(clf, encoder_state)
    clf.eval()
    out = [
        _tapped(clf, torch.from_numpy(b), tap).numpy()
        for b in np.array_split(clips.audio, len(clips.audio) // 8 + 1)
        if len(b)
    ]
    return clips.valid(np.concatenate(out))


def logmel_features(model: ModelConfig, clips: Clips) -> np.ndarray:
    import librosa

    sr, hop = model.sample_rate_hz, model.hop_samples
    mel = librosa.feature.melspectrogram(
        y=clips.audio, sr=sr, n_fft=int(0.032 * sr), hop_length=hop, n_mels=64, center=True
    )  # (N, 64, S / hop + 1)
    feats = librosa.power_to_db(mel, ref=1.0, top_db=None).transpose(0, 2, 1)
    return clips.valid(feats[:, : clips.audio.shape[1] // hop])


def fit_probe(x: np.ndarray, y: np.ndarray, max_frames: int, seed: int):
    """One standardised logistic regression per class with a positive frame (None otherwise),
    on at most ``max_frames`` frames drawn uniformly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(x))[:max_frames]
    x, y = x[pick], y[pick] >= 0.5
    models = []
    for c in range(y.shape[1]):
        if not y[:, c].any() or y[:, c].all():
            models.append(None)
            continue
        m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        models.append(m.fit(x, y[:, c]))
    return models


def probe_ap(train_x, train_y, test_x, test_y, classes, max_frames: int, seed: int) -> float:
    models = fit_probe(train_x, train_y, max_frames, seed)
    prob = np.zeros_like(test_y, dtype=np.float64)
    for c, m in enumerate(models):
        if m is not None:
            prob[:, c] = m.predict_proba(test_x)[:, 1]
    keep = [c for c, m in enumerate(models) if m is not None]
    return frame_metrics(test_y[:, keep], prob[:, keep], [classes[c] for c in keep])["macro_ap"]


def chunk_out_ap(x: np.ndarray, clips: Clips, max_frames: int, seed: int) -> float:
    """Leave one chunk out: a probe fitted on the other chunks scores each; macro AP over
    the pooled scores."""
    bounds = np.cumsum([0] + [len(t) for t in clips.targets])
    y = clips.y
    probs = np.zeros_like(y, dtype=np.float64)
    for i in range(len(clips.targets)):
        test = np.zeros(len(y), bool)
        test[bounds[i] : bounds[i + 1]] = True
        for c, m in enumerate(fit_probe(x[~test], y[~test], max_frames, seed)):
            if m is not None:
                probs[test, c] = m.predict_proba(x[test])[:, 1]
    return frame_metrics(y, probs, clips.classes)["macro_ap"]


@torch.no_grad()
def heldout_pretrain_stats(job: PretrainJob, states: dict | None, clips: Clips) -> dict:
    """Masked-prediction loss and target spread on held-out audio with fixed masks."""
    torch.manual_seed(job.run.seed)
    core = Data2VecPretrainer(job.model, job.masking, job.ema)
    if states is not None:
        core.load_state_dict(states["model"])
    core.eval()
    rng = np.random.default_rng(0)
    outs = [
        core(torch.from_numpy(clips.audio[i : i + 4]), rng)
        for i in range(0, min(len(clips.audio), 32), 4)
    ]
    return {
        "heldout_loss": float(np.mean([float(o.loss) for o in outs])),
        "target_std": float(np.mean([o.target_std for o in outs])),
    }


def pretrain_job(args: argparse.Namespace, steps: list[int], archive: str, out: str) -> PretrainJob:
    """The probe's own pretraining: as many steps as the largest requested, a checkpoint at
    every requested step (their gcd) and every one of them kept."""
    positive = [s for s in steps if s > 0]
    every = reduce(math.gcd, positive) if positive else 1
    sets = [f"data.archive={archive}", f"run.storage_path={storage.join(out, 'runs')}"]
    sets += ["run.name=probe-pretrain", f"run.seed={args.seed}"]
    sets += [f"optim.max_steps={max(steps, default=1) or 1}", f"run.checkpoint_every_steps={every}"]
    sets += [f"run.keep_checkpoints={max(positive, default=0) // every + 1}"]
    if not storage.is_remote(out):
        sets += [f"tracking.uri=sqlite:///{storage.split_uri(storage.join(out, 'mlflow.db'))[1]}"]
    sets += [f"cluster.address={args.address}"] if args.address else []
    return load_config(
        PretrainJob, ROOT / f"configs/pretrain/{args.preset}.yaml", sets + args.overrides
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="outputs/probe")
    ap.add_argument("--preset", default="tiny", choices=["tiny", "base", "large"])
    ap.add_argument("--steps", default="0,200,800,2400", help="checkpoints to probe")
    ap.add_argument("--archive", help="a labelled archive (default: a synthetic one)")
    ap.add_argument("--annotations", help="its annotations (CSV, Raven, Audacity, a folder)")
    ap.add_argument("--test-files", help="regex of the recordings (relative paths) to test on")
    ap.add_argument("--drop-labels", default="", help="comma list of labels left out")
    ap.add_argument("--hours", type=float, default=0.5, help="synthetic training audio")
    ap.add_argument("--test-hours", type=float, default=0.1, help="held-out synthetic audio")
    ap.add_argument("--seed", type=int, default=2024, help="archive and pretraining seed")
    ap.add_argument("--probe-frames", type=int, default=60000, help="frames the probe fits on")
    ap.add_argument("--address", default=None, help="Ray cluster (default: local)")
    ap.add_argument(
        "--taps",
        type=lambda s: [t for t in s.split(",") if t],
        default=[],
        help=f"also probe these points of the encoder at every step (of {','.join(TAPS[1:])}): "
        "the Sinc + conv output, the projection into the encoder, the last block's output",
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="pretraining")
    ap.add_argument(
        "--pretrain-run",
        default=None,
        metavar="URI",
        help="probe the kept checkpoints of this pretraining run (<storage_path>/<name>, as "
        "`a2v pretrain` writes it) instead of pretraining one; --steps must be among them",
    )
    args = ap.parse_args(argv)
    if bool(args.archive) != bool(args.annotations) or (args.archive and not args.test_files):
        ap.error("--archive needs --annotations and --test-files")
    unknown = sorted(set(args.taps) - set(TAPS))
    if unknown:
        ap.error(f"--taps: unknown {unknown}; choose from {list(TAPS)}")
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    t0 = time.time()
    flush_denormals()
    steps = sorted({int(s) for s in args.steps.split(",")})
    out = args.out if storage.is_remote(args.out) else storage.absolute(args.out)
    archive, test = bench_parts(
        out,
        args.archive,
        args.annotations,
        args.test_files,
        args.drop_labels,
        (args.hours, args.test_hours, args.seed),
    )

    positive = [s for s in steps if s > 0]
    if args.pretrain_run:  # someone else's run: its own config, its kept checkpoints
        run_dir = args.pretrain_run.rstrip("/")
        tree = yaml.safe_load(storage.read_bytes(storage.join(run_dir, CONFIG)))
        sets = [f"cluster.address={args.address}"] if args.address else []
        job = build_config(PretrainJob, drop_masked(tree), sets + args.overrides)
        ckpts = checkpoints_by_step(run_dir)
    else:
        job = pretrain_job(args, steps, archive, out)
        run_dir = run_dir_of(job)
        ckpts = checkpoints_by_step(run_dir) if positive and storage.exists(run_dir) else {}
        if any(s not in ckpts for s in positive):  # a run that holds every step is not redone
            every = job.run.checkpoint_every_steps
            print(f"== pretrain {args.preset}: {max(positive)} steps, a checkpoint every {every}")
            pretrain.run(job)
            ckpts = checkpoints_by_step(run_dir)
    missing = [s for s in positive if s not in ckpts]
    if missing:
        raise SystemExit(
            f"error: no checkpoint at steps {missing} under {run_dir} (it holds {sorted(ckpts)})"
        )

    print("== features")
    init_ray(args.address)  # the reads below run on Ray, also when pretraining was skipped
    train = archive_clips(job, archive)
    held = archive_clips(job, test, train.classes)
    real = real_clips(job)
    rows = []

    def row(name: str, step, feats, stats: dict) -> None:
        ap_syn = probe_ap(
            feats(train), train.y, feats(held), held.y, train.classes, args.probe_frames, args.seed
        )
        ap_real = (
            chunk_out_ap(feats(real), real, args.probe_frames, args.seed) if real else float("nan")
        )
        rows.append(
            {"features": name, "step": step, **stats, "probe_macro_ap": ap_syn, "real_ap": ap_real}
        )
        print(
            f"   {name:>14}: probe macro AP {ap_syn:.3f}, real {ap_real:.3f} ({time.time() - t0:.0f} s)"
        )

    row("log-mel", None, lambda c: logmel_features(job.model, c), {})
    for step in steps:
        states = None
        if step > 0:
            with storage.fetched(ckpts[step]) as local:
                states = torch.load(Path(local, "model.pt"), map_location="cpu", weights_only=True)
        else:
            torch.manual_seed(job.run.seed)  # the initialisation pretraining starts from
            states = {"model": Data2VecPretrainer(job.model, job.masking, job.ema).state_dict()}
        enc = encoder_state(states["model"])
        stats = heldout_pretrain_stats(job, states, held)
        stats["teacher_init"] = teacher_init_share(job.ema, step)  # how random the teacher is
        row(f"step {step}", step, lambda c, e=enc: encoder_features(job.model, e, c), stats)
        for tap in args.taps:
            feats = lambda c, e=enc, t=tap: encoder_features(job.model, e, c, t)  # noqa: E731
            row(f"step {step} {tap}", step, feats, {})

    table = pd.DataFrame(rows).astype({"step": "Int64"})
    storage.write_bytes(storage.join(out, "probe.csv"), table.to_csv(index=False).encode())
    md = markdown(table)
    storage.write_bytes(storage.join(out, "probe.md"), (md + "\n").encode())
    print("\n== linear probe: frame macro AP on the held-out archive")
    print(md)
    what = (
        f"{redact_uri(args.archive)} (test: {args.test_files!r})"
        if args.archive
        else f"{args.hours} h train / {args.test_hours} h held out (seed {args.seed})"
    )
    print(
        f"preset {args.preset}, {what}; {len(train.audio)} / {len(held.audio)} chunks, "
        f"classes {train.classes}; {time.time() - t0:.0f} s"
    )
    return table


def markdown(table: pd.DataFrame) -> str:
    """The table with three decimals, steps as whole numbers (a float column printed 300.000)."""
    steps = table["step"].map(lambda s: "" if pd.isna(s) else str(int(s)))
    return table.assign(step=steps).to_markdown(index=False, floatfmt=".3f")


def real_clips(job: PretrainJob) -> Clips | None:
    """spinetail: the one real recording with two chunks and labels in both."""
    folder = REAL / "spinetail"
    if not (folder / "spinetail.wav").exists():
        return None
    events = inputs.read_annotations(str(folder / "spinetail_annotations.csv"))
    job = job.model_copy(deep=True)
    job.data.extensions = ["wav"]
    return read_clips(job, str(folder), events, annotations.class_list(events))


if __name__ == "__main__":
    main()
