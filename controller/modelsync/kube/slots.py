"""Slots of one asyncio loop's shared work (the inference gate's pods, the canary
analysis queries), shared by namespace as kube/shares.py decides. Thread-safe: a
reconcile thread may get in line (and so know its place at once); the slot is waited
for, and given back, on the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from modelsync.kube.shares import Pool


@dataclass(eq=False)
class Turn:
    """One piece of work's place: in line, then holding a slot (from `granted_at`, the
    monotonic clock's), then gone."""

    namespace: str
    granted_at: float | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Slots:
    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pool: Pool[Turn] = Pool(capacity)

    def join(self, namespace: str) -> Turn:
        """A place in line for `namespace` (any thread); `wait` for the slot."""
        turn = Turn(namespace)
        with self._lock:
            self._pool.wait(namespace, turn)
        self.loop.call_soon_threadsafe(self._hand_on)
        return turn

    async def wait(self, turn: Turn) -> None:
        """Until `turn` holds a slot (on the loop)."""
        self._hand_on()
        await turn.ready.wait()

    def leave(self, turn: Turn) -> None:
        """`turn` gives back its slot or its place (any thread; twice is once)."""
        with self._lock:
            self._pool.leave(turn)
        self.loop.call_soon_threadsafe(self._hand_on)

    def ahead(self, turn: Turn) -> int | None:
        """How many get a slot before `turn`; None once it holds one (or left)."""
        with self._lock:
            return self._pool.ahead(turn)

    def _hand_on(self) -> None:
        """Free slots to the fairest turns waiting (on the loop: the events are its)."""
        while True:
            with self._lock:
                turn = self._pool.take()
            if turn is None:
                return
            turn.granted_at = time.monotonic()
            turn.ready.set()
