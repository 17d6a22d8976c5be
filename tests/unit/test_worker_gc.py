"""`tune_gc`: what each Gunicorn worker does to the garbage collector before it serves."""

from __future__ import annotations

import gc

from app.worker import tune_gc


def test_tune_gc_freezes_the_heap_and_sets_only_the_youngest_threshold() -> None:
    before = gc.get_threshold()
    try:
        tuned = tune_gc(1234)
        assert tuned["frozen"] == gc.get_freeze_count() > 0
        assert gc.get_threshold() == (1234, *before[1:])
        assert tuned["threshold"] == [1234, *before[1:]]
        # 0 keeps whatever threshold is set.
        assert tune_gc(0)["threshold"] == [1234, *before[1:]]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
