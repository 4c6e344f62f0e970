"""Ray Tune sweeps over masking, focal-loss and learning-rate settings.

    a2v tune --config configs/tune/masking_focal.yaml [--set num_samples=16]
    a2v tune --resume masking-focal [--storage-path outputs/tune]

Each trial runs ``tune.trial.run_trial`` (the same builders and loops as ``a2v finetune``,
optionally after a short ``a2v pretrain``: per trial when the space sweeps ``pretrain.*`` keys,
else once for the sweep); ASHA stops weak trials early on the validation
metric. MLflow gets one parent run for the sweep and one child run per trial (params and
metric history). At the end: a results table (printed and ``results.csv``), ``sweep.png``
(best metric vs each swept parameter) and ``best_finetune.yaml`` (plus ``best_pretrain.yaml``
when trials pretrain) that ``a2v finetune --config`` / ``a2v pretrain --config`` accept.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd
import ray
import ray.tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from a2v_core.config_loader import to_yaml
from a2v_core.errors import InputError, JobError
from a2v_core.redact import drop_masked
from pipelines.data import storage
from pipelines.data.shared_storage import require_shared
from pipelines.runtime.jobargs import (
    ADDRESS_HELP,
    SET_HELP,
    add_dry_run,
    add_verbose,
    command,
    parser,
)
from pipelines.runtime.ray_init import init_ray
from pipelines.runtime.tracking import Tracker, experiment_name, tracking_uri
from tune.plots import plot_sweep
from tune.space import SweepConfig, load_sweep, sweep_from_dict
from tune.trial import ensure_pretrained, pretrain_final, run_trial


def max_concurrent(sweep: SweepConfig, resources: dict[str, float]) -> int:
    """Trials that fit side by side: each holds its driver CPUs plus its Train workers, and
    0.5 CPU per trial is left for Ray Data reading (Train + Data deadlock otherwise)."""
    if sweep.max_concurrent_trials:
        return sweep.max_concurrent_trials
    c = sweep.finetune_job().cluster
    per_trial_cpu = sweep.trial_driver_cpus + c.num_workers * c.cpus_per_worker + 0.5
    fit = int(resources.get("CPU", 0) // per_trial_cpu)
    if c.use_gpu:
        fit = min(fit, int(resources.get("GPU", 0) // c.num_workers))
    return max(1, fit)


def _scheduler(sweep: SweepConfig):
    if sweep.scheduler.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=sweep.scheduler.max_t or sweep.reports_per_trial(),
        grace_period=sweep.scheduler.grace_period,
        reduction_factor=sweep.scheduler.reduction_factor,
    )


def _parent_run(sweep: SweepConfig, resumed: bool) -> tuple[Tracker, str | None]:
    experiment = experiment_name(sweep.tracking.experiment, "sweep")
    tracker = Tracker(sweep.tracking.uri, experiment, active=sweep.tracking.enabled)
    run_id = tracker.find_run(sweep.name) if resumed else None
    params = {f"space.{k}": v.model_dump(exclude_none=True) for k, v in sweep.space.items()}
    params.update(
        num_samples=sweep.num_samples, metric=sweep.metric, scheduler=sweep.scheduler.type
    )
    run_id = tracker.start(
        sweep.name, params, {"a2v.run_name": sweep.name, "a2v.job": "tune"}, run_id=run_id
    )
    return tracker, run_id


class SweepMLflowCallback(MLflowLoggerCallback):
    """Tune's MLflow callback without the tracking URI in its pickle: Tune writes its callbacks
    into ``tuner.pkl`` in the sweep's folder, and a URI may carry a password. ``setup`` (on this
    driver, for a fresh and for a resumed sweep) reads $MLFLOW_TRACKING_URI, which
    ``build_tuner`` sets from the sweep's tracking config."""

    def __getstate__(self) -> dict:
        return {**self.__dict__, "tracking_uri": None}

    def setup(self, *args, **kwargs):
        self.tracking_uri = tracking_uri()
        super().setup(*args, **kwargs)


def build_tuner(sweep: SweepConfig, parent_id: str | None, resume: bool) -> ray.tune.Tuner:
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(run_trial, sweep=sweep.model_dump(mode="json")),
        {"CPU": sweep.trial_driver_cpus},
    )
    storage_path, storage_fs = storage.train_storage(sweep.storage_path)
    path = storage.join(storage_path, sweep.name)
    uri = tracking_uri(sweep.tracking.uri)
    if sweep.tracking.enabled:  # what SweepMLflowCallback.setup reads, resumed sweeps included
        os.environ["MLFLOW_TRACKING_URI"] = uri
    if resume:
        if not ray.tune.Tuner.can_restore(path, storage_filesystem=storage_fs):
            raise InputError(f"--resume: no sweep state to resume at {path}")
        return ray.tune.Tuner.restore(
            path,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage_fs,
        )
    callbacks = []
    if sweep.tracking.enabled:
        callbacks.append(
            SweepMLflowCallback(
                tracking_uri=uri,
                experiment_name=experiment_name(sweep.tracking.experiment, "sweep"),
                tags={"mlflow.parentRunId": parent_id, "a2v.sweep": sweep.name},
            )
        )
    limit = max_concurrent(sweep, ray.cluster_resources())
    print(f"[tune] {sweep.name}: up to {limit} concurrent trial(s)", flush=True)
    search_alg = None
    if sweep.search_seed is not None:
        from ray.tune.search import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=sweep.search_seed, max_concurrent=limit)
    return ray.tune.Tuner(
        trainable,
        param_space=sweep.param_space(),
        tune_config=ray.tune.TuneConfig(
            metric=sweep.metric,
            mode="max",
            num_samples=sweep.num_samples,
            max_concurrent_trials=limit,
            scheduler=_scheduler(sweep),
            search_alg=search_alg,
            reuse_actors=False,
        ),
        run_config=ray.tune.RunConfig(
            name=sweep.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            callbacks=callbacks,
        ),
    )


def results_table(sweep: SweepConfig, grid) -> pd.DataFrame:
    """trial, params, best metric (over all validations), validations, stopped early, status."""
    full = sweep.scheduler.max_t or sweep.reports_per_trial()
    rows = []
    for res in grid:
        hist = res.metrics_dataframe
        cfg = res.config or {}
        best = float("nan")
        if hist is not None and sweep.metric in hist:
            best = float(hist[sweep.metric].max())
        done = int(hist["training_iteration"].max()) if hist is not None and len(hist) else 0
        rows.append(
            {
                "trial": (res.metrics or {}).get("trial_id") or res.path.rsplit("/", 1)[-1],
                **cfg.get("params", {}),
                f"best_{sweep.metric}": best,
                "validations": done,
                "stopped_early": bool(res.error is None and done < full),
                "status": "ERROR" if res.error else "TERMINATED",
            }
        )
    return pd.DataFrame(rows).sort_values(
        f"best_{sweep.metric}", ascending=False, na_position="last"
    )


def write_best(sweep: SweepConfig, table: pd.DataFrame, out_dir: str) -> dict[str, str]:
    """The best trial's settings as job YAMLs ``a2v finetune/pretrain --config`` accept."""
    best = table.iloc[0]
    params = {k: best[k] for k in sweep.space}
    params = {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()}
    written = {}
    fjob = sweep.finetune_job(params)
    fjob.run.name = f"{sweep.name}-best"
    if sweep.pretrain is not None:
        pjob = sweep.pretrain_job(params)
        pjob.run.name = f"{sweep.name}-best-pretrain"
        written["pretrain"] = storage.join(out_dir, "best_pretrain.yaml")
        storage.write_bytes(written["pretrain"], to_yaml(pjob).encode())
        # the pretraining the best trial fine-tuned from, so the YAML fine-tunes as it did
        fjob.pretrained = pretrain_final(sweep, best["trial"])
    written["finetune"] = storage.join(out_dir, "best_finetune.yaml")
    header = (
        f"# best trial {best['trial']} of sweep {sweep.name}: "
        f"{sweep.metric} {best[f'best_{sweep.metric}']:.4f}\n"
    )
    storage.write_bytes(written["finetune"], (header + to_yaml(fjob)).encode())
    return written


def shared_inputs(sweep: SweepConfig) -> dict[str, str | None]:
    """What every node must reach: the storage path, the archives, the pretrained model."""
    fjob = sweep.finetune_job()
    shared = {
        "storage_path": sweep.storage_path,
        "finetune: data.archive": fjob.data.archive,
        "finetune.pretrained": fjob.pretrained,
    }
    if sweep.pretrain is not None:
        shared["pretrain: data.archive"] = sweep.pretrain_job().data.archive
    return shared


def run(sweep: SweepConfig, resume: bool = False, address: str | None = None) -> dict[str, Any]:
    sweep.storage_path = storage.absolute(sweep.storage_path)
    sweep.pin(storage.absolute)
    init_ray(address)
    # trials, and their Train workers, run on any node
    require_shared(shared_inputs(sweep), None, sweep.finetune_job().cluster.shared_paths)
    out_dir = storage.join(sweep.storage_path, sweep.name)
    tracker, parent_id = _parent_run(sweep, resume)
    if resume:  # children an interrupted driver left RUNNING: a resumed trial logs anew
        tracker.close_running_children("KILLED")
    if not resume:
        storage.write_bytes(storage.join(out_dir, "sweep.yaml"), to_yaml(sweep).encode())
    t0 = time.time()
    if sweep.pretrain is not None and not sweep.pretrain_per_trial:
        final = ensure_pretrained(sweep, {}, None)  # once for all trials (resumes if cut)
        print(f"[tune] {sweep.name}: every trial fine-tunes from {final}", flush=True)
    grid = build_tuner(sweep, parent_id, resume).fit()
    table = results_table(sweep, grid)
    csv = table.to_csv(index=False)
    storage.write_bytes(storage.join(out_dir, "results.csv"), csv.encode())
    png = plot_sweep(table, sweep)
    storage.write_bytes(storage.join(out_dir, "sweep.png"), png)
    written = (
        write_best(sweep, table, out_dir) if table[f"best_{sweep.metric}"].notna().any() else {}
    )
    wall = time.time() - t0
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    errors = int((table["status"] == "ERROR").sum())
    tracker.log_text(to_yaml(sweep), "sweep.yaml")
    tracker.log_text(csv, "results.csv")
    for name, uri in written.items():
        tracker.log_text(storage.read_bytes(uri).decode(), f"best_{name}.yaml")
    tracker.log_png(png, "sweep.png")
    best = table.iloc[0]
    tracker.log_metrics(
        {
            f"best_{sweep.metric}": float(best[f"best_{sweep.metric}"]),
            "trials": len(table),
            "trials_stopped_early": int(table["stopped_early"].sum()),
            "trials_errored": errors,
            "wall_s": wall,
        },
        step=0,
    )
    tracker.set_tags({"best_trial": str(best["trial"])})
    tracker.end("FAILED" if errors == len(table) else "FINISHED")
    print(
        f"[tune] {len(table)} trials ({int(table['stopped_early'].sum())} stopped early, {errors} errors) "
        f"in {wall:.0f} s; best config: {written.get('finetune')}; results: {out_dir}"
    )
    if errors == len(table):  # a sweep of which nothing ran is a failed job, not a result
        raise JobError(f"all {errors} trials failed; their errors are under {out_dir}")
    return {"table": table, "best": written, "dir": out_dir, "mlflow_run_id": parent_id}


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v tune", __doc__)
    ap.add_argument("--config", help="sweep YAML (configs/tune/...)")
    ap.add_argument("--resume", metavar="NAME", help="continue the interrupted sweep NAME")
    ap.add_argument(
        "--storage-path", default=None, help="where sweeps live (default: the config's)"
    )
    ap.add_argument("--address", default=None, help=ADDRESS_HELP)
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP
    )
    add_dry_run(ap, "one trial of one file / one step per stage (sweep <name>-dry-run)")
    add_verbose(ap)
    args = ap.parse_args(argv)
    if bool(args.config) == bool(args.resume):
        ap.error("give exactly one of --config or --resume NAME")
    if args.dry_run and args.resume:
        ap.error("--dry-run starts a sweep; it does not resume one")
    overrides = list(args.overrides)
    if args.storage_path:
        overrides.append(f"storage_path={args.storage_path}")
    if args.resume:
        sweep = resume_config(args.resume, args.storage_path, overrides)
    else:
        sweep = load_sweep(args.config, overrides)  # ConfigError: one line, exit 2
    if args.dry_run:
        sweep = sweep.dry_run()
    run(sweep, resume=bool(args.resume), address=args.address)


def resume_config(name: str, storage_path: str | None, overrides: list[str]) -> SweepConfig:
    import yaml

    root = storage_path or SweepConfig().storage_path
    uri = storage.join(root, name, "sweep.yaml")
    if not storage.exists(uri):
        raise InputError(f"--resume {name}: no sweep of that name under {root} (looked for {uri})")
    # sweep.yaml holds redacted URIs: a masked one is not reused; the live value comes from
    # --set or $MLFLOW_TRACKING_URI (resolved and pinned again as on a first start)
    tree = drop_masked(yaml.safe_load(storage.read_bytes(uri)))
    return sweep_from_dict(tree, overrides)


if __name__ == "__main__":
    main()
