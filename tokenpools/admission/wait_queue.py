"""A bounded FIFO of waiting requests, each with a deadline (its SLO's admission delay).

Requests leave in arrival order (`pop_ready` offers only the head, so a
large request is not overtaken forever by small ones) or when their deadline
passes (`expire`). Deadlines may arrive out of order; a heap finds the
expired ones and removal is lazy, so push, pop and expire are O(log n) and
O(1) amortized when deadlines are monotone (one SLO per queue).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class _Entry(Generic[T]):
    __slots__ = ("alive", "deadline", "item", "seq")

    def __init__(self, item: T, deadline: float, seq: int) -> None:
        self.item = item
        self.deadline = deadline
        self.seq = seq
        self.alive = True


class WaitQueue(Generic[T]):
    """Bounded FIFO with per-item deadlines; items must be hashable and unique."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._fifo: deque[_Entry[T]] = deque()
        self._heap: list[tuple[float, int, _Entry[T]]] = []
        self._by_item: dict[T, _Entry[T]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._by_item)

    def __contains__(self, item: object) -> bool:
        return item in self._by_item

    def push(self, item: T, deadline: float) -> bool:
        """Queue `item` until `deadline`; False when the queue is full."""
        if len(self._by_item) >= self.capacity:
            return False
        if item in self._by_item:
            raise ValueError("item is already queued")
        entry = _Entry(item, deadline, next(self._seq))
        self._by_item[item] = entry
        self._fifo.append(entry)
        heapq.heappush(self._heap, (deadline, entry.seq, entry))
        return True

    def _drop(self, entry: _Entry[T]) -> None:
        entry.alive = False
        del self._by_item[entry.item]

    def _head(self) -> _Entry[T] | None:
        fifo = self._fifo
        while fifo and not fifo[0].alive:
            fifo.popleft()
        return fifo[0] if fifo else None

    def peek(self) -> T | None:
        head = self._head()
        return head.item if head else None

    def remove(self, item: T) -> bool:
        """Take an item out (its client went away); False if it was not queued."""
        entry = self._by_item.get(item)
        if entry is None:
            return False
        self._drop(entry)
        return True

    def expire(self, now: float) -> list[T]:
        """Remove and return, in deadline order, every item whose deadline is <= now."""
        out: list[T] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            if entry.alive:
                self._drop(entry)
                out.append(entry.item)
        if not self._by_item:  # forget dead entries wholesale once empty
            self._fifo.clear()
            heap.clear()
        return out

    def pop_ready(self, admit: Callable[[T], bool]) -> list[T]:
        """Pop items from the head for as long as `admit(head)` accepts them."""
        out: list[T] = []
        while True:
            head = self._head()
            if head is None or not admit(head.item):
                return out
            self._fifo.popleft()
            self._drop(head)
            out.append(head.item)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not heap[0][2].alive:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
