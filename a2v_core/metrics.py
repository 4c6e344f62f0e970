"""Frame-level and event-level metrics (docs/recipe.md §7).

Frame: AP per class / macro / micro (scikit-learn) and micro precision/recall/F1 at a
threshold (0.175 = the original's model selection threshold). Event: per class, a predicted
interval matches a ground-truth interval when IoU > ``iou_threshold`` (0 = any overlap, as
the original); precision, recall, F1, and AP over the score-ranked predictions, normalised
by the number of ground-truth events (a missed event can never be recalled: AP 0 without
predictions).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from a2v_core.events import RUN_COLUMNS, EventRule, pooled, run_rows


def precision_recall_f1(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """From true positives, predicted positives and actual positives (0 where undefined)."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def frame_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, classes: list[str], threshold: float = 0.175
) -> dict:
    """y_true, y_prob: (frames, C). Classes without any positive frame get AP = NaN and are
    left out of the macro mean (scikit-learn would warn and return 0)."""
    y_true = (y_true >= 0.5).astype(np.int8)
    pred = y_prob >= threshold
    tp = int((pred & (y_true == 1)).sum())
    fp = int((pred & (y_true == 0)).sum())
    fn = int((~pred & (y_true == 1)).sum())
    precision, recall, f1 = precision_recall_f1(tp, tp + fp, tp + fn)
    # imported here: every Ray Train worker imports this module through a2v_core.training,
    # and scikit-learn (+ scipy) costs each process ~0.7 s that pretraining never uses
    from sklearn.metrics import average_precision_score

    per_class = {}
    for c, name in enumerate(classes):
        per_class[name] = (
            float(average_precision_score(y_true[:, c], y_prob[:, c]))
            if y_true[:, c].any()
            else float("nan")
        )
    present = [v for v in per_class.values() if not np.isnan(v)]
    micro_ap = (
        float(average_precision_score(y_true.ravel(), y_prob.ravel()))
        if y_true.any()
        else float("nan")
    )
    return {
        "micro_precision": precision,
        "micro_recall": recall,
        "micro_f1": f1,
        "macro_ap": float(np.mean(present)) if present else float("nan"),
        "micro_ap": micro_ap,
        "per_class_ap": per_class,
        "threshold": threshold,
    }


def _iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    return inter / union if union > 0 else 0.0


def ranked_ap(hits_in_rank_order: np.ndarray, n_true: int) -> float:
    """Non-interpolated AP: mean over ground-truth items of the precision at the rank where
    each was retrieved (0 for never retrieved); NaN when there is no ground truth."""
    if n_true == 0:
        return float("nan")
    if not hits_in_rank_order.any():
        return 0.0
    precision_at_k = np.cumsum(hits_in_rank_order) / np.arange(1, len(hits_in_rank_order) + 1)
    return float(precision_at_k[hits_in_rank_order].sum() / n_true)


def match_class(pred: pd.DataFrame, truth: pd.DataFrame, iou_threshold: float = 0.0) -> dict:
    """Greedy one-to-one matching within one class (and one file set), best-scoring first."""
    used: set[int] = set()
    positives = []
    tp = 0
    truth_list = list(truth[["file", "onset_s", "offset_s"]].itertuples(index=False))
    for p in pred.sort_values("score", ascending=False).itertuples(index=False):
        best, best_iou = None, iou_threshold
        for j, t in enumerate(truth_list):
            if j in used or t.file != p.file:
                continue
            iou = _iou(p.onset_s, p.offset_s, t.onset_s, t.offset_s)
            if iou > best_iou:
                best, best_iou = j, iou
        positives.append(best is not None)
        if best is not None:
            used.add(best)
            tp += 1
    precision, recall, f1 = precision_recall_f1(tp, len(pred), len(truth_list))
    ap = ranked_ap(np.array(positives, dtype=bool), len(truth_list))
    return {
        "tp": tp,
        "n_pred": len(pred),
        "n_true": len(truth_list),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ap": ap,
    }


def event_metrics(
    pred: pd.DataFrame, truth: pd.DataFrame, classes: list[str], iou_threshold: float = 0.0
) -> dict:
    """Per-class and pooled (micro) event precision/recall/F1, plus macro AP."""
    per_class = {}
    for c in classes:
        per_class[c] = match_class(
            pred[pred["label"] == c], truth[truth["label"] == c], iou_threshold
        )
    tp = sum(v["tp"] for v in per_class.values())
    n_pred = sum(v["n_pred"] for v in per_class.values())
    n_true = sum(v["n_true"] for v in per_class.values())
    precision, recall, f1 = precision_recall_f1(tp, n_pred, n_true)
    aps = [v["ap"] for v in per_class.values() if not np.isnan(v["ap"])]
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro_ap": float(np.mean(aps)) if aps else float("nan"),
        "iou_threshold": iou_threshold,
        "per_class": per_class,
    }


def overlap_event_metrics(pred: pd.DataFrame, truth: pd.DataFrame, classes: list[str]) -> dict:
    """Event scores comparable to the paper's segment metric (IoU > 0, not one-to-one): a
    prediction is right when it overlaps any call of its class in its file, a call is found
    when any prediction overlaps it; a call split into three predictions counts three right
    predictions, not one hit and two false alarms. Pooled over classes (micro), with
    per-class counts. The stricter one-to-one scores are ``event_metrics``."""
    per_class = {}
    for c in classes:
        p, t = pred[pred["label"] == c], truth[truth["label"] == c]
        hit_pred = hit_true = 0
        by_file = {f: g for f, g in t.groupby("file")}
        found: set[tuple] = set()
        for row in p.itertuples(index=False):
            calls = by_file.get(row.file)
            if calls is None:
                continue
            over = calls[(calls.onset_s < row.offset_s) & (calls.offset_s > row.onset_s)]
            if len(over):
                hit_pred += 1
                found.update(zip(over.file, over.onset_s, over.offset_s, strict=True))
        hit_true = len(found)
        precision = hit_pred / len(p) if len(p) else 0.0
        recall = hit_true / len(t) if len(t) else 0.0
        per_class[c] = {
            "pred_on_a_call": hit_pred,
            "n_pred": len(p),
            "calls_found": hit_true,
            "n_true": len(t),
            "precision": precision,
            "recall": recall,
        }
    n_pred = sum(v["n_pred"] for v in per_class.values())
    n_true = sum(v["n_true"] for v in per_class.values())
    precision = sum(v["pred_on_a_call"] for v in per_class.values()) / n_pred if n_pred else 0.0
    recall = sum(v["calls_found"] for v in per_class.values()) / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "per_class": per_class}


def class_events_at(
    clips: list[tuple[str, float, np.ndarray, np.ndarray | None]],
    c: int,
    name: str,
    threshold: float,
    rule: EventRule,
    frame_rate_hz: float,
    smooth: list[np.ndarray] | None = None,
) -> pd.DataFrame:
    """The events of class ``c`` that ``rule`` with ``threshold`` for that class makes from
    the clips (file, offset_s, raw probs (T, C), reviewed frames (T,) or None), as
    ``EventRule.events`` would (``smooth``: the clips' ``events.pooled``, computed once)."""
    if smooth is None:
        smooth = [pooled(p, frame_rate_hz, rule.pool_s, known) for _, _, p, known in clips]
    rows = []
    for (file, offset, p, _), s in zip(clips, smooth, strict=True):
        rows += run_rows(p[:, [c]], s[:, [c]], [name], [threshold], file, offset, frame_rate_hz)
    alone = replace(rule, top_class_only=False)  # a class is tuned on its own events
    return alone.merge(pd.DataFrame(rows, columns=RUN_COLUMNS))


def tune_thresholds(
    clips: list[tuple[str, float, np.ndarray, np.ndarray | None]],
    truth: pd.DataFrame,
    classes: list[str],
    frame_rate_hz: float,
    rule: EventRule,
    grid: np.ndarray | None = None,
    iou_threshold: float = 0.0,
    min_events: int = 1,
) -> dict[str, float]:
    """Per class, the threshold that maximises the event F1 (matches above ``iou_threshold``)
    of the events ``rule`` makes with it (``class_events_at``: the events ``a2v label``
    writes: runs merged across chunks, then the length filter, scored on raw probabilities)
    over the given clips (file, offset_s, raw probs (T, C), reviewed frames (T,) or None);
    ties go to the higher threshold. A class with fewer than ``min_events`` ground-truth
    events keeps ``rule.threshold``: one missed event would otherwise tune it to the top of
    the grid and silence it. ``truth`` holds the events of those clips in file time (file,
    onset_s, offset_s, label). Each class is tuned alone (``top_class_only`` is not applied)."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if grid is None else grid
    smooth = [pooled(p, frame_rate_hz, rule.pool_s, known) for _, _, p, known in clips]
    out = {}
    for c, name in enumerate(classes):
        t = truth[truth["label"] == name]
        if len(t) < max(1, min_events):
            out[name] = float(rule.threshold)
            continue
        best_f1, best_thr = -1.0, float(rule.threshold)
        for thr in grid:
            pred = class_events_at(clips, c, name, float(thr), rule, frame_rate_hz, smooth)
            f1 = match_class(pred, t, iou_threshold)["f1"] if len(pred) else 0.0
            if f1 >= best_f1:
                best_f1, best_thr = f1, float(thr)
        out[name] = best_thr
    return out
