"""Few-shot benchmark: does self-supervised pretraining on *your* archive pay at few labels?

    # any labelled archive: the recordings matching --test-files are the test part
    python bench/fewshot.py --out outputs/fewshot-gy6or6 \\
        --archive ../shared/data/real/bengalese_finch_gy6or6 \\
        --annotations ../shared/data/real/bengalese_finch_gy6or6/annotations.csv \\
        --test-files _260312_ --drop-labels=-,x --set model.sample_rate_hz=32000 \\
        --fractions 0.1 --pretrain-steps 1000 --pretrain-set optim.lr=0.002   # ~1 h, 2 cores
    python bench/fewshot.py --out outputs/fewshot              # no archive: the synthetic smoke test
    python bench/fewshot.py --out s3://bucket/fewshot --preset base --archive s3://bucket/site \\
        --annotations s3://bucket/site/labels.csv --test-files 'site3/' --pretrain-steps 10000 \\
        --finetune-steps 3000 --set cluster.use_gpu=true --address auto            # a cluster

The archive is split by groups of recordings (``bench.archive_split``: no test recording is
pretrained or fine-tuned on). For each pretraining budget (``--pretrain-steps``, a list; 0 is
no pretraining) the training part's audio is pretrained on (its labels unused), once per
budget (``--pretrain-per-seed``: once per seed), then fine-tuned with each label fraction, from
the pretrained encoder and from random initialisation with the same steps, seed and split
(the arms of a seed are paired). The seed also moves the labelled split (``data.split_seed``),
where most of the few-shot spread comes from. Every fine-tuned model is scored by ``a2v
evaluate`` on the test part. Prints, per budget and fraction, frame macro-AP, micro-F1 and
event F1 (IoU > 0 and 0.5) as mean +- sd over the seeds, the paired difference against
scratch (and, where scratch ran at 100 % labels, against that), the labelled calls per class
(the fewest over classes and seeds) and the wall time, and writes ``<out>/fewshot.csv`` (one
row per run; rows of cells an earlier invocation ran are kept) and ``fewshot.md``. Every run is skipped
when its output exists, so a cut benchmark continues where it stopped.

A pretraining recipe (the resolved pretraining config: the preset's YAML and ``--pretrain-set``)
is known by a six-digit key (``fewshot-pre<steps>-<key>-...`` runs, the ``pretrain_recipe``
column): another recipe into the same ``--out`` adds its own runs and rows beside the earlier
ones, paired with the same scratch runs, and never takes their finished runs for its own. What
every cell shares (preset, ``--set``, fine-tuning steps, the resolved fine-tuning and evaluation
configs) is kept in ``<out>/bench.json``; a rerun with other shared settings is refused.
Pretraining keeps a checkpoint at every quarter of its budget for ``bench/probe.py
--pretrain-run``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/fewshot.py`

from a2v_core.config import EvaluateJob, FinetuneJob, PretrainJob  # noqa: E402
from a2v_core.config_loader import load_config  # noqa: E402
from a2v_core.errors import InputError  # noqa: E402
from a2v_core.redact import redact_tree, redact_uri  # noqa: E402
from bench.archive_split import bench_parts  # noqa: E402
from bench.fewshot_table import labelled_calls, merged, read_table, summary  # noqa: E402
from pipelines import evaluate, finetune, pretrain  # noqa: E402
from pipelines.data import inputs, storage  # noqa: E402
from pipelines.runtime.run_dir import BEST, FINAL, SPLITS  # noqa: E402

MIN_CALLS = 3  # fewer labelled calls of a class: a cell measures the draw, not the initialisation


def probe_best_step(table_uri: str) -> int:
    table = pd.read_csv(io.BytesIO(storage.read_bytes(table_uri)))
    steps = table.dropna(subset=["step"])
    return int(steps.loc[steps["probe_macro_ap"].idxmax(), "step"])


#: what differs between the cells of one benchmark, left out of its config keys
FINETUNE_CELL_KEYS = (
    "data.archive",
    "data.annotations",
    "data.label_fraction",
    "data.split_seed",
    "pretrained",
)
EVALUATE_CELL_KEYS = ("model", "data.archive", "data.annotations", "out", "overwrite")


@dataclass(frozen=True)
class Cell:
    """One fine-tuning run and its evaluation: ``budget`` pretraining steps (0: scratch)."""

    budget: int
    fraction: float
    seed: int
    recipe: str = ""  # the pretraining config's key (config_key); scratch: ""

    @property
    def init(self) -> str:
        return "pretrained" if self.budget else "scratch"

    @property
    def name(self) -> str:
        pre = f"pre{self.budget}-{self.recipe}" if self.budget else "scratch"
        return f"fewshot-{pre}-{self.fraction:g}-s{self.seed}"


def recipe_of(pretrain_overrides: list[str]) -> str:
    """The --pretrain-set overrides as a row shows them: sorted, one line, no password."""
    return redact_uri(" ".join(sorted(pretrain_overrides)))


def config_key(job: BaseModel, drop: tuple[str, ...]) -> str:
    """Six hex digits of what a resolved job learns or scores with: every setting except its
    run, tracking and cluster groups and the ``drop`` keys (dotted: the cell's length, paths,
    seeds). A changed YAML, default or --set is another key, so finished runs of other settings
    are never taken for these."""
    tree = job.model_dump(mode="json", exclude={"run", "tracking", "cluster"})
    for dotted in drop:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return hashlib.sha1(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:6]


def plan(
    budgets: list[int], fractions: list[float], seeds: list[int], recipe: str = ""
) -> list[Cell]:
    """Every (budget, fraction, seed) cell, scratch (budget 0) always among them: the arm every
    pretrained cell is paired with (scratch carries no pretraining recipe)."""
    budgets = sorted({0, *budgets})
    return [Cell(b, f, s, recipe if b else "") for b in budgets for f in fractions for s in seeds]


def pretrain_name(budget: int, seed: int, per_seed: bool, recipe: str) -> str:
    return f"fewshot-pretrain{budget}-{recipe}" + (f"-s{seed}" if per_seed else "")


def held_settings(args: argparse.Namespace, out: str, keys: dict[str, str]) -> None:
    """An --out folder is one benchmark: the settings every cell of it shares (the preset, the
    --set of both jobs, the fine-tuning steps, a synthetic archive's size, the ``keys`` of the
    resolved fine-tuning and evaluation configs) are kept in ``<out>/bench.json``; a rerun with
    others is refused before any work, as the group split refuses another split. Pretraining
    recipes may differ: their runs are told apart by their own key."""
    record = {
        "preset": args.preset,
        "set": sorted(args.overrides),
        "finetune_steps": args.finetune_steps,
        **keys,
    }
    if not args.archive:
        record |= {"hours": args.hours, "test_hours": args.test_hours, "seed": args.archive_seed}
    record = redact_tree(record)  # as written: no password in a URI
    uri = storage.join(out, "bench.json")
    if storage.exists(uri):
        held = json.loads(storage.read_bytes(uri))
        if held != record:
            diff = {k: (held.get(k), v) for k, v in record.items() if held.get(k) != v}
            raise InputError(
                f"{redact_uri(out)} holds a benchmark run with other settings "
                f"(held, asked: {diff}): its cells would not compare; use another --out"
            )
        return
    storage.write_bytes(uri, json.dumps(record, indent=1).encode())


class Bench:
    """The benchmark's runs under ``out``: each stage skipped when its output exists."""

    def __init__(self, args: argparse.Namespace, out: str, train: str, test: str) -> None:
        self.args, self.out, self.train, self.test = args, out, train, test
        test_events = inputs.read_annotations(storage.join(test, "annotations.csv"))
        self.test_classes = set(test_events["label"])
        uri = f"sqlite:///{storage.split_uri(storage.join(out, 'mlflow.db'))[1]}"
        self.tracking = [] if storage.is_remote(out) else [f"tracking.uri={uri}"]
        address = [f"cluster.address={args.address}"] if args.address else []
        self.common = [f"run.storage_path={storage.join(out, 'runs')}", *self.tracking, *address]
        self.common += args.overrides
        self.recipe = config_key(self.pretrain_job(1, 0, "x"), ("optim.max_steps", "data.archive"))
        cell = Cell(0, 1.0, 0)
        self.keys = {
            "finetune_config": config_key(self.finetune_job(cell, None), FINETUNE_CELL_KEYS),
            "evaluate_config": config_key(self.evaluate_job(cell, "x"), EVALUATE_CELL_KEYS),
        }

    def pretrain_job(self, budget: int, seed: int, name: str) -> PretrainJob:
        sets = [f"data.archive={self.train}", f"optim.max_steps={budget}", f"run.name={name}"]
        sets += [f"run.seed={seed if self.args.pretrain_per_seed else 0}"]
        # a checkpoint kept at every quarter: `bench/probe.py --pretrain-run` probes the curve
        sets += [f"run.checkpoint_every_steps={max(1, budget // 4)}", "run.keep_checkpoints=5"]
        cfg = f"configs/pretrain/{self.args.preset}.yaml"
        return load_config(PretrainJob, cfg, self.common + sets + self.args.pretrain_overrides)

    def pretrained(self, budget: int, seed: int) -> str:
        """The pretraining export of ``budget`` steps on the training part's audio."""
        name = pretrain_name(budget, seed, self.args.pretrain_per_seed, self.recipe)
        final = storage.join(self.out, "runs", name, FINAL)
        if not storage.exists(storage.join(final, "model.pt")):
            print(f"== pretrain {self.args.preset}, {budget} steps ({name})", flush=True)
            pretrain.run(self.pretrain_job(budget, seed, name))
        return final

    def finetune_job(self, cell: Cell, pretrained: str | None) -> FinetuneJob:
        steps = self.args.finetune_steps
        return load_config(
            FinetuneJob,
            f"configs/finetune/{self.args.preset}.yaml",
            self.common
            + [
                f"data.archive={self.train}",
                f"data.annotations={storage.join(self.train, 'annotations.csv')}",
                f"data.label_fraction={cell.fraction}",
                f"data.split_seed={1612 + cell.seed}",
                f"run.seed={cell.seed}",
                f"optim.max_steps={steps}",
                f"run.validate_every_steps={max(1, steps // 6)}",
                f"run.checkpoint_every_steps={max(1, steps // 3)}",
                f"run.name={cell.name}",
                "tracking.registered_model=animal2vec-fewshot",
            ]
            + ([f"pretrained={pretrained}"] if pretrained else []),
        )

    def evaluate_job(self, cell: Cell, best: str) -> EvaluateJob:
        return load_config(
            EvaluateJob,
            "configs/label/default.yaml",
            [
                f"model={best}",
                f"data.archive={self.test}",
                f"data.annotations={storage.join(self.test, 'annotations.csv')}",
                f"out={storage.join(self.out, 'eval', cell.name)}",
                f"run.name=eval-{cell.name}",
                "overwrite=true",
                *self.tracking,
            ]
            + ([f"cluster.address={self.args.address}"] if self.args.address else []),
        )

    def finetuned(self, cell: Cell) -> tuple[str, FinetuneJob]:
        best = storage.join(self.out, "runs", cell.name, BEST)
        if storage.exists(storage.join(best, "model.pt")):
            return best, self.finetune_job(cell, None)
        pretrained = self.pretrained(cell.budget, cell.seed) if cell.budget else None
        print(f"== finetune {cell.name}", flush=True)
        job = self.finetune_job(cell, pretrained)
        finetune.run(job)
        return best, job

    def scored(self, cell: Cell, events: pd.DataFrame) -> dict:
        """One finished cell's row (fine-tuned and evaluated first where not done yet)."""
        t0 = time.time()
        best, job = self.finetuned(cell)
        metrics_uri = storage.join(self.out, "eval", cell.name, "metrics.json")
        if not storage.exists(metrics_uri):
            evaluate.run(self.evaluate_job(cell, best))
        m = json.loads(storage.read_bytes(metrics_uri))
        splits_uri = storage.join(self.out, "runs", cell.name, SPLITS)
        splits = pd.read_csv(io.BytesIO(storage.read_bytes(splits_uri)))
        calls = labelled_calls(splits, events, job.data.clip_s, self.test_classes)
        return {
            "pretrain_steps": cell.budget,
            "pretrain_recipe": cell.recipe,
            "pretrain_set": recipe_of(self.args.pretrain_overrides) if cell.budget else "",
            "label_fraction": cell.fraction,
            "seed": cell.seed,
            "init": cell.init,
            "train_clips": int((splits["split"] == "train").sum()),
            "min_calls_per_class": int(calls.min()),
            "calls_per_class": calls.to_dict(),
            "frame_macro_ap": m["frame"]["macro_ap"],
            "frame_micro_f1": m["frame"]["micro_f1"],
            "event_f1": m["events"]["iou_0"]["f1"],
            "event_f1_iou50": m["events"].get("iou_0.5", {}).get("f1"),
            "wall_s": time.time() - t0,
        }


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="outputs/fewshot")
    ap.add_argument("--archive", help="a labelled archive (default: a synthetic one)")
    ap.add_argument("--annotations", help="its annotations (CSV, Raven, Audacity, a folder)")
    ap.add_argument("--test-files", help="regex of the recordings (relative paths) to test on")
    ap.add_argument("--drop-labels", default="", help="comma list of labels left out")
    ap.add_argument("--preset", default="tiny", choices=["tiny", "base", "large"])
    ap.add_argument("--hours", type=float, default=2.0, help="synthetic training audio")
    ap.add_argument("--test-hours", type=float, default=0.1, help="synthetic test audio")
    ap.add_argument("--archive-seed", type=int, default=2024)
    ap.add_argument("--seeds", default="0,1,2", help="fine-tuning and split seeds")
    ap.add_argument(
        "--pretrain-steps",
        default=None,
        help="comma list of pretraining budgets (0: none); default --probe's best, else 400",
    )
    ap.add_argument(
        "--pretrain-per-seed",
        action="store_true",
        help="pretrain once per seed (run.seed) instead of once per budget",
    )
    ap.add_argument("--probe", default=None, help="a bench/probe.py probe.csv")
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--fractions", default="0.05,0.1,1.0")
    ap.add_argument("--address", default=None, help="Ray cluster (default: local)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="both jobs")
    ap.add_argument(
        "--pretrain-set",
        dest="pretrain_overrides",
        action="append",
        default=[],
        help="pretraining only (e.g. ema.decay=0.995, as bench/probe.py --set): another "
        "recipe, its runs and rows told apart from the others' in the same --out",
    )
    args = ap.parse_args(argv)
    if bool(args.archive) != bool(args.annotations) or (args.archive and not args.test_files):
        ap.error("--archive needs --annotations and --test-files")
    if args.pretrain_steps is None:
        args.pretrain_steps = str(probe_best_step(args.probe) if args.probe else 400)
    return args


def parts(args: argparse.Namespace, out: str) -> tuple[str, str]:
    """(train, test) archives: the labelled archive's group split, or synthetic ones."""
    synth = (args.hours, args.test_hours, args.archive_seed)
    return bench_parts(
        out, args.archive, args.annotations, args.test_files, args.drop_labels, synth
    )


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse(argv)
    t0 = time.time()
    out = storage.absolute(args.out) if not storage.is_remote(args.out) else args.out
    train, test = parts(args, out)
    bench = Bench(args, out, train, test)
    held_settings(args, out, bench.keys)
    events = inputs.read_annotations(storage.join(train, "annotations.csv"))
    cells = plan(
        [int(b) for b in args.pretrain_steps.split(",")],
        [float(f) for f in args.fractions.split(",")],
        [int(s) for s in args.seeds.split(",")],
        bench.recipe,
    )
    runs = pd.DataFrame([bench.scored(cell, events) for cell in cells])
    csv_uri = storage.join(out, "fewshot.csv")
    earlier = read_table(storage.read_bytes(csv_uri)) if storage.exists(csv_uri) else None
    runs = merged(earlier, runs)
    storage.write_bytes(csv_uri, runs.to_csv(index=False).encode())
    table = summary(runs)
    md = table.to_markdown(index=False)
    storage.write_bytes(storage.join(out, "fewshot.md"), (md + "\n").encode())
    what = f"{args.archive} (test: {args.test_files!r})" if args.archive else "synthetic archive"
    print(f"\n== few-shot on {what}: pretrained vs scratch, mean +- sd over seeds")
    print(md)
    thin = table.loc[table["min_calls_per_class"] < MIN_CALLS, "label_fraction"].tolist()
    if thin:
        print(
            f"warning: at label fraction {', '.join(f'{f:g}' for f in thin)} some seed's split "
            f"holds fewer than {MIN_CALLS} calls of a class: such a cell follows which clips "
            "were drawn more than the initialisation"
        )
    print(
        f"preset {args.preset}, seeds {args.seeds}, pretraining budgets {args.pretrain_steps} "
        f"(--pretrain-set {recipe_of(args.pretrain_overrides)!r}), {args.finetune_steps} "
        f"fine-tuning steps, both --set {redact_tree(args.overrides)}; {time.time() - t0:.0f} s"
    )
    return runs


if __name__ == "__main__":
    main()
