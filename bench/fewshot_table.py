"""The few-shot benchmark's table: the labelled calls a split holds, the rows of earlier
invocations merged in, and the paired mean +- sd summary (``bench/fewshot.py`` runs the cells)."""

from __future__ import annotations

import io

import pandas as pd

METRICS = ("frame_macro_ap", "frame_micro_f1", "event_f1", "event_f1_iou50")
#: a row's cell: what makes it one run
CELL_KEY = ["pretrain_steps", "pretrain_recipe", "label_fraction", "seed", "init"]


def labelled_calls(
    splits: pd.DataFrame, events: pd.DataFrame, clip_s: float, scored: set | None = None
) -> pd.Series:
    """Calls per class whose onset lies in a train clip; ``scored``: only the classes the test
    part holds (a class it lacks moves no score, so its count warns of nothing)."""
    train = splits.loc[splits["split"] == "train", ["path", "offset_s"]]
    hits = events.merge(
        train.rename(columns={"offset_s": "clip_at"}), left_on="file", right_on="path"
    )
    inside = (hits["onset_s"] >= hits["clip_at"]) & (hits["onset_s"] < hits["clip_at"] + clip_s)
    counts = hits[inside].groupby("label").size()
    classes = set(events["label"]) if scored is None else set(events["label"]) & scored
    return counts.reindex(sorted(classes), fill_value=0)


def read_table(data: bytes) -> pd.DataFrame:
    """A written ``fewshot.csv``: recipe keys stay text (``"845982"`` is not a number)."""
    return with_recipe(
        pd.read_csv(io.BytesIO(data), dtype={"pretrain_recipe": str, "pretrain_set": str})
    )


def with_recipe(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows with their ``pretrain_recipe`` and ``pretrain_set`` (a table from before recipes
    were told apart: one recipe, unnamed)."""
    cols = ("pretrain_recipe", "pretrain_set")
    return runs.assign(**{c: runs.get(c, "") for c in cols}).fillna({c: "" for c in cols})


def merged(earlier: pd.DataFrame | None, now: pd.DataFrame) -> pd.DataFrame:
    """This invocation's rows, plus an earlier ``fewshot.csv``'s rows of cells not in it (a
    grid run in parts, e.g. scratch at 100 % labels after the pretrained cells, adds up)."""
    now = with_recipe(now)
    if earlier is None or earlier.empty:
        return now
    earlier = with_recipe(earlier)
    keys = set(map(tuple, now[CELL_KEY].itertuples(index=False)))
    kept = earlier[[tuple(k) not in keys for k in earlier[CELL_KEY].itertuples(index=False)]]
    return pd.concat([kept, now], ignore_index=True).sort_values(CELL_KEY, ignore_index=True)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """mean +- sd per (budget, pretraining recipe, fraction) and of the paired pretrained - scratch
    difference of each seed (scratch: the budget-0 runs of the same fraction and seed); where
    scratch ran at 100 % labels too, the paired difference against it (``_vs_full``: does
    pretraining at few labels match training from scratch on all of them?)."""
    rows = []
    scratch = runs[runs["init"] == "scratch"].set_index(["label_fraction", "seed"])
    full = scratch.loc[1.0] if 1.0 in scratch.index.get_level_values(0) else None
    runs = with_recipe(runs)
    for (budget, recipe, frac), g in runs[runs["init"] == "pretrained"].groupby(
        ["pretrain_steps", "pretrain_recipe", "label_fraction"]
    ):
        g = g.set_index("seed")
        row = {"pretrain_steps": budget, "pretrain_recipe": recipe}
        row |= {"pretrain_set": g["pretrain_set"].iloc[0], "label_fraction": frac}
        row["seeds"] = len(g)
        base = scratch.loc[frac].reindex(g.index)
        row["min_calls_per_class"] = int(g["min_calls_per_class"].min())
        row["wall_s"] = int(g["wall_s"].sum()) if "wall_s" in g else 0
        for m in METRICS:
            for name, v in (("pretrained", g[m]), ("scratch", base[m])):
                row[f"{m}_{name}"] = mean_sd(v)
            row[f"{m}_diff"] = mean_sd(g[m] - base[m], signed=True)
            if full is not None and frac < 1.0:
                row[f"{m}_vs_full"] = mean_sd(g[m] - full[m].reindex(g.index), signed=True)
        rows.append(row)
    return pd.DataFrame(rows)


def mean_sd(v: pd.Series, signed: bool = False) -> str:
    v = v.dropna()
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():{'+' if signed else ''}.3f} +- {sd:.3f}" if len(v) else "n/a"
