"""The worker collects garbage between batches: the young generation after every batch, the
older ones every ``GC_MIDDLE_EVERY`` and ``GC_OLDEST_EVERY`` batches, and mid-batch only past a
large threshold."""

import gc

from streams.ingest import (
    GC_MIDDLE_EVERY,
    GC_OLDEST_EVERY,
    GC_YOUNGEST,
    collect_between_batches,
    tune_gc,
)


def test_tune_gc_moves_young_collections_out_of_batches() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold()[0] == GC_YOUNGEST >= 1_000_000
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_young_generation_after_each_batch_middle_every_tenth() -> None:
    garbage = [[] for _ in range(1000)]
    for item in garbage:
        item.append(item)  # cycles: only a collection frees them
    del garbage, item
    collect_between_batches(1)
    young, middle, _ = gc.get_count()
    assert young < 100  # collected: what the loop allocated is gone from the young generation
    assert middle >= 1  # a young collection counts towards the middle generation
    collect_between_batches(GC_MIDDLE_EVERY)
    assert gc.get_count()[1] == 0  # the middle generation was collected too


def test_oldest_generation_every_thousandth_batch() -> None:
    gc.collect(1)  # counts towards the oldest generation
    assert gc.get_count()[2] >= 1
    collect_between_batches(GC_OLDEST_EVERY + GC_MIDDLE_EVERY)  # a tenth, not a thousandth
    assert gc.get_count()[2] >= 1
    collect_between_batches(2 * GC_OLDEST_EVERY)
    assert gc.get_count()[2] == 0
