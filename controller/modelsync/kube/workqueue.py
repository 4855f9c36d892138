"""A work queue of object keys, in the manner of client-go's: a key waits in the
queue at most once, is never worked on by two workers at once, is worked on again
if it changed while being worked on, and comes back with growing delay on failure.

The workers are shared by namespace (kube/shares.py, `namespace_of` a key's): a free
worker takes the oldest key of the namespace with the fewest keys being worked on, so
one tenant's 10,000 models queued at a resync never hold another tenant's key behind
them all, and lose nothing when no other namespace waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from modelsync.kube.shares import Pool


def model_namespace(key: Hashable) -> str:
    """The namespace of the operator's keys ((kind, namespace, name)); "" otherwise."""
    return str(key[1]) if isinstance(key, tuple) and len(key) == 3 else ""


class WorkQueue:
    def __init__(
        self,
        retry_seconds: float = 5.0,
        max_retry_seconds: float = 300.0,
        namespace_of: Callable[[Hashable], str] = model_namespace,
    ) -> None:
        self._pool: Pool[Hashable] = Pool()
        self._namespace_of = namespace_of
        self._takers: list[asyncio.Future[None]] = []  # workers waiting for a key
        self._idle: asyncio.Event | None = None  # made on the loop, on first use
        self._waiting: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds

    def add(self, key: Hashable) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._pool.wait(self._namespace_of(key), key)
            while self._takers:
                taker = self._takers.pop(0)
                if not taker.done():
                    taker.set_result(None)
                    break

    async def get(self) -> Hashable:
        while True:
            key = self._pool.take()
            if key is not None:
                break
            taker = asyncio.get_running_loop().create_future()
            self._takers.append(taker)
            try:
                await taker
            finally:
                if taker in self._takers:
                    self._takers.remove(taker)
        self._waiting.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Hashable, *, failed: bool = False) -> float | None:
        """Finish `key`; returns the retry delay when it failed and will come back."""
        self._active.discard(key)
        self._pool.leave(key)
        delay = None
        if failed:
            count = self._failures.get(key, 0)
            self._failures[key] = count + 1
            delay = min(self._retry * 2**count, self._max_retry)
            asyncio.get_running_loop().call_later(delay, self.add, key)
        else:
            self._failures.pop(key, None)
        if key in self._again:
            self._again.discard(key)
            self.add(key)
        if self._idle is not None and not len(self):
            self._idle.set()
        return delay

    def schedule(self, key: Hashable, delay: float) -> None:
        """Add `key` after `delay` seconds; a later schedule of the same key replaces this one."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def scheduled(self, key: Hashable) -> bool:
        """A `schedule` of `key` is pending."""
        return key in self._timers

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __contains__(self, key: Hashable) -> bool:
        """Waiting, being worked on, or due to be worked on again."""
        return key in self._waiting or key in self._active or key in self._again

    def __len__(self) -> int:
        return len(self._waiting) + len(self._active)

    async def join(self) -> None:
        """Until no key waits nor is worked on."""
        while len(self):
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()
