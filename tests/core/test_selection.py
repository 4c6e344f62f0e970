"""The fine-tuning loop's selection of its ``best`` export (``a2v_core.selection``)."""

from a2v_core.selection import BestKeeper


def run(keeper: BestKeeper, validations: list[dict], max_step: int) -> list[str]:
    """Feed validations (with their step) as the loop does; -> the log of tunes and keeps."""
    log = []
    for v in validations:
        step = v.pop("step")
        keeper.update(
            v,
            step,
            final=step == max_step,
            tune=lambda s=step: (log.append(f"tune@{s}"), {"x": s / 100})[1],
            keep_weights=lambda s=step: log.append(f"keep@{s}"),
        )
    return log


def test_best_by_the_select_metric_ties_by_the_other_then_the_earlier():
    keeper = BestKeeper("val_macro_ap")
    log = run(
        keeper,
        [
            {"step": 10, "val_micro_f1": 0.0, "val_macro_ap": 0.4},
            {"step": 20, "val_micro_f1": 0.3, "val_macro_ap": 0.4},  # tie on AP: F1 decides
            {"step": 30, "val_micro_f1": 0.9, "val_macro_ap": 0.3},  # worse AP: not kept
            {"step": 40, "val_micro_f1": 0.3, "val_macro_ap": 0.4},  # a full tie: the earlier
            {"step": 50, "val_micro_f1": 0.1, "val_macro_ap": 0.2},  # the final step
        ],
        max_step=50,
    )
    assert keeper.best["step"] == 20
    # thresholds are tuned at a new best and at the final step only
    assert log == ["tune@10", "keep@10", "tune@20", "keep@20", "tune@50"]
    assert keeper.best_thresholds == {"x": 0.2} and keeper.last_thresholds == {"x": 0.5}
    assert keeper.thresholds_of("best") == {"x": 0.2}
    assert keeper.thresholds_of("final") == {"x": 0.5}


def test_a_resumed_run_keeps_its_best_and_thresholds():
    keeper = BestKeeper("val_micro_f1")
    run(keeper, [{"step": 10, "val_micro_f1": 0.5, "val_macro_ap": 0.5}], max_step=100)
    resumed = BestKeeper.restore("val_micro_f1", {**keeper.meta(), "classes": ["x"]})
    assert resumed == keeper
    log = run(resumed, [{"step": 20, "val_micro_f1": 0.4, "val_macro_ap": 0.9}], max_step=100)
    assert log == [] and resumed.best["step"] == 10  # not better by micro-F1: nothing kept
    fresh = BestKeeper.restore("val_micro_f1", None)
    assert fresh.best == {"val_micro_f1": -1.0, "val_macro_ap": -1.0}


def test_the_progress_line_reads_before_any_best_and_after_one():
    """A run whose validations all score NaN (a collapsed encoder) keeps no best: its log line
    says so instead of failing on a best without a step."""
    keeper = BestKeeper("val_macro_ap")
    nan = {"val_micro_f1": float("nan"), "val_macro_ap": float("nan")}
    assert not keeper.update(nan, 50, False, dict, lambda: None)
    assert keeper.progress() == "no best val_macro_ap yet: no validation has scored"
    assert keeper.update({"val_micro_f1": 0.2, "val_macro_ap": 0.283}, 100, False, dict, list)
    assert keeper.progress() == "best val_macro_ap 0.283 @ 100"
