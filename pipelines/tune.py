"""``python -m pipelines.tune`` = ``a2v tune``: the Ray Tune sweep job (``tune.sweep``), under
the ``python -m pipelines.<job>`` name every other job has (``ray job submit ... --``)."""

from __future__ import annotations

from tune.sweep import main

if __name__ == "__main__":
    main()
