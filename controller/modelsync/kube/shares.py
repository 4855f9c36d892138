"""Shares of a shared pool by namespace (validation and analysis slots, the workers,
the outbound sender threads): who gets the next free unit. Pure: plain data and no
lock; the shell holds its own around every call.

The next free unit goes to the namespace holding the fewest, the one that asked
first among equals. Work-conserving: a namespace alone may hold every unit; while
another namespace waits, each unit that comes free goes to it, so a tenant's slow
work keeps at most the units it had, each for as long as one piece of its work may
take, and never holds the others' back behind all of its own.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

Waiter = TypeVar("Waiter", bound=Hashable)
Item = TypeVar("Item")


class Held:
    """How many units each namespace holds, and which candidate is served next."""

    def __init__(self) -> None:
        self._by: dict[str, int] = {}

    def __getitem__(self, namespace: str) -> int:
        return self._by.get(namespace, 0)

    def __len__(self) -> int:
        return sum(self._by.values())

    def take(self, namespace: str) -> None:
        self._by[namespace] = self._by.get(namespace, 0) + 1

    def give_back(self, namespace: str) -> None:
        left = self._by.get(namespace, 0) - 1
        if left > 0:
            self._by[namespace] = left
        else:
            self._by.pop(namespace, None)

    def fairest(self, candidates: Iterable[tuple[str, int, Item]]) -> Item | None:
        """Of (namespace, order, item): the item of the namespace holding fewest, the
        lowest order (the oldest) among equals."""
        best: tuple[tuple[int, int], Item] | None = None
        for namespace, order, item in candidates:
            rank = (self[namespace], order)
            if best is None or rank < best[0]:
                best = (rank, item)
        return None if best is None else best[1]


class Pool(Generic[Waiter]):
    """Waiters in line by namespace (each line first come, first served) and the units
    each namespace holds; `capacity` None: as many units as there are takers (the
    workers, who take when they are free)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.held = Held()
        self._lines: dict[str, collections.OrderedDict[Waiter, int]] = {}
        self._namespace: dict[Waiter, str] = {}  # every waiter and holder
        self._holders: set[Waiter] = set()
        self._told = 0

    def wait(self, namespace: str, waiter: Waiter) -> None:
        """`waiter` gets in line (once: waiting or holding already changes nothing)."""
        if waiter in self._namespace:
            return
        self._told += 1
        self._lines.setdefault(namespace, collections.OrderedDict())[waiter] = self._told
        self._namespace[waiter] = namespace

    def take(self) -> Waiter | None:
        """The waiter that gets the next unit (it holds it until `leave`), or None: no
        unit free, or nobody waits."""
        if self.capacity is not None and len(self.held) >= self.capacity:
            return None
        heads = ((ns, next(iter(line.values())), ns) for ns, line in self._lines.items())
        namespace = self.held.fairest(heads)
        if namespace is None:
            return None
        line = self._lines[namespace]
        waiter, _ = line.popitem(last=False)
        if not line:
            del self._lines[namespace]
        self._holders.add(waiter)
        self.held.take(namespace)
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """`waiter` gives its unit back, or its place in line; nothing if neither."""
        namespace = self._namespace.pop(waiter, None)
        if namespace is None:
            return
        if waiter in self._holders:
            self._holders.discard(waiter)
            self.held.give_back(namespace)
            return
        line = self._lines[namespace]
        del line[waiter]
        if not line:
            del self._lines[namespace]

    def holds(self, waiter: Waiter) -> bool:
        return waiter in self._holders

    def waiting(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def __contains__(self, waiter: object) -> bool:
        return waiter in self._namespace

    def ahead(self, waiter: Waiter) -> int | None:
        """How many waiters get a unit before `waiter`, as things stand (no unit given
        back meanwhile); None when it is not in line. The k-th of a namespace's line is
        served at rank (what the namespace holds + k, when it asked), in rank order."""
        namespace = self._namespace.get(waiter)
        if namespace is None or waiter in self._holders:
            return None
        line = self._lines[namespace]
        position = list(line).index(waiter)
        mine = (self.held[namespace] + position, line[waiter])
        ahead = position
        for other, others in self._lines.items():
            if other == namespace:
                continue
            base = self.held[other]
            # Those of `other`'s line whose rank is below ours: all with a smaller count,
            # and the one with an equal count if it asked first.
            before = max(0, min(len(others), mine[0] - base))
            ahead += before
            if before < len(others) and base + before == mine[0]:
                order = list(others.values())[before]
                ahead += 1 if order < mine[1] else 0
        return ahead
