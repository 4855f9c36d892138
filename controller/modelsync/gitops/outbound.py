"""Record and tell, off the sync's path: what commit statuses (commitstatus.py) and
notifications (notify.py) share to reach a host outside the cluster. One queue for all
ModelSyncs, bounded (notices.Outbox: a full one drops the newcomer), a few threads
shared by namespace (the Outbox's shares: one tenant's slow hosts never hold another
tenant's items), each ModelSync's items sent in the order they came, one at a time,
each request within a wall-clock deadline (commitstatus.send). Nothing here blocks or
raises into a sync or a watch handler; what an item says and where it goes is the
subclass's `_send`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from modelsync.gitops import notices

log = logging.getLogger(__name__)

# Reads an object (api version, kind, namespace, name): the Secrets items name.
Getter = Callable[[str, str, str, str], dict[str, Any] | None]
# Posts an Event about a ModelSync: (the ModelSync, reason, message, warning).
EventPoster = Callable[[dict[str, Any], str, str, bool], None]
Key = notices.Key  # a ModelSync's namespace and name
Item = TypeVar("Item")
# What `_send` asks for when an item is to be sent again: (seconds to wait, the item).
Retry = tuple[float, Item]


class Sender(Generic[Item]):
    """The queue, its threads, and the failures already told (`_failing`, by what failed:
    the same failure again is no new Event)."""

    def __init__(
        self,
        get: Getter,
        event: EventPoster,
        allowed: tuple[str, ...],
        *,
        max_queued: int,
        workers: int,
        timeout: float,
        thread_prefix: str,
    ) -> None:
        self.get = get
        self.event = event
        self.allowed = allowed
        self.max_queued = max_queued
        self.workers = workers
        self.timeout = timeout
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._outbox: notices.Outbox[Item] = notices.Outbox(max_queued)
        self._failing: dict[tuple[str, str, str], str] = {}
        self._stopping = threading.Event()
        self._prefix = thread_prefix
        self._threads = 0
        self._idle = 0  # threads waiting for work that no offer has woken yet

    def shutdown(self) -> None:
        """Threads stop once their request ends (within its deadline); nothing waits."""
        with self._lock:
            self._stopping.set()
            self._wake.notify_all()

    def _offer(self, key: Key, item: Item) -> str:
        """Queue `item` (the caller holds `_lock`): QUEUED, or DROPPED when full. An idle
        thread is woken, or one more started while fewer than `workers` run."""
        admitted = self._outbox.offer(key, item)
        if admitted != notices.QUEUED or self._stopping.is_set():
            return admitted
        if self._idle > 0:
            self._idle -= 1
            self._wake.notify()
        elif self._threads < self.workers:
            self._threads += 1
            threading.Thread(
                target=self._work, name=f"{self._prefix}-{self._threads}", daemon=True
            ).start()
        return admitted

    def _work(self) -> None:
        """One sender thread: the item the Outbox's shares give it, until shutdown."""
        while True:
            with self._lock:
                picked = self._outbox.take(time.monotonic())
                while picked is None:
                    if self._stopping.is_set():
                        return
                    due = self._outbox.next_due()
                    wait = None if due is None else max(0.0, due - time.monotonic())
                    self._idle += 1
                    if not self._wake.wait(wait):  # a retry is due (no offer woke it)
                        self._idle = max(0, self._idle - 1)
                    picked = self._outbox.take(time.monotonic())
            key, item = picked
            retry: Retry[Item] | None = None
            try:
                retry = self._send(item)
            except Exception:  # a fault of ours must not stop the other items
                log.exception("%s/%s: sending failed", *key)
            with self._lock:
                if retry is not None and not self._stopping.is_set():
                    self._outbox.later(key, retry[1], time.monotonic() + retry[0])
                else:
                    self._outbox.done(key)
                # The key's next item may go now, or a retry's time moved the wait.
                self._wake.notify_all()
                self._idle = 0

    def _send(self, item: Item) -> Retry[Item] | None:
        """Send one item; a Retry to have it sent again later (its thread free meanwhile)."""
        raise NotImplementedError
