"""A job runs as ``python -m pipelines.<job>``: its module is ``__main__``, and Ray pickles the
functions it sends to workers *by value*, with every global they reach that is defined there.
A class defined in the job module (once ``finetune.Targets``) then drags unpicklable globals
along and the job fails before training; the share-nothing tests run the jobs that way."""

from __future__ import annotations

import types
from pathlib import Path

import cloudpickle
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module, functions",
    [("pipelines.pretrain", ["train_loop"]), ("pipelines.finetune", ["train_loop"])],
)
def test_the_worker_functions_of_a_job_run_as_main_pickle(module, functions):
    source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
    source = source.replace('if __name__ == "__main__":\n    main()', "")
    as_main = types.ModuleType("__main__as_run")  # not importable: pickled by value, as __main__
    as_main.__file__ = str(ROOT / (module.replace(".", "/") + ".py"))
    exec(compile(source, as_main.__file__, "exec"), as_main.__dict__)
    for name in functions:
        fn = getattr(as_main, name)
        assert fn.__module__ == "__main__as_run"
        cloudpickle.loads(cloudpickle.dumps(fn))  # raises on what cannot travel
