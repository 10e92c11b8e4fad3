"""Once the worker has started, a fetched batch's records set off no garbage collection.

The records aiokafka hands over (`ConsumerRecord`) are objects the cyclic
collector tracks; with Python's default young generation a 5,000-record batch
set off collections that walked them while in use (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from streams.app import settle_heap

BATCH = 5000


@pytest.fixture
def collector() -> Iterator[None]:
    """The process's collector as it was, restored after the test (settling is global)."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def collections_during(work: Callable[[], object]) -> list[int]:
    """The generations the collector went through while `work` ran."""
    started: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.collect()  # start from an empty young generation
    gc.callbacks.append(note)
    try:
        work()
    finally:
        gc.callbacks.remove(note)
    return started


def one_batch() -> None:
    records = [ConsumerRecord("t", 0, i, 0, 0, None, b"{}", None, 0, 2, ()) for i in range(BATCH)]
    assert all(map(gc.is_tracked, records))  # what makes them the collector's business


def test_a_batch_of_fetched_records_sets_off_no_collection_once_the_heap_is_settled(
    collector: None,
) -> None:
    assert collections_during(one_batch)  # the default young generation: collections mid-batch
    settle_heap(BATCH)
    assert gc.get_freeze_count() > 0  # what start-up built is out of every later collection
    assert collections_during(lambda: [one_batch() for _ in range(5)]) == []
    gc.collect()  # cyclic garbage is still collected when asked, or after more allocations
