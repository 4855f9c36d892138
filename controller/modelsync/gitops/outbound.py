"""Record and tell, off the sync's path: what commit statuses (commitstatus.py) and
notifications (notify.py) share to reach a host outside the cluster. One queue for all
ModelSyncs, bounded (notices.Outbox: a full one drops the newcomer), a few threads, each
ModelSync's items sent in the order they came, one at a time. Nothing here blocks or
raises into a sync or a watch handler; what an item says and where it goes is the
subclass's `_send`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from modelsync.gitops import notices

log = logging.getLogger(__name__)

# Reads an object (api version, kind, namespace, name): the Secrets items name.
Getter = Callable[[str, str, str, str], dict[str, Any] | None]
# Posts an Event about a ModelSync: (the ModelSync, reason, message, warning).
EventPoster = Callable[[dict[str, Any], str, str, bool], None]
Key = tuple[str, str]  # a ModelSync's namespace and name
Item = TypeVar("Item")


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
        self.timeout = timeout
        self._lock = threading.Lock()
        self._outbox: notices.Outbox[Key, Item] = notices.Outbox(max_queued)
        self._failing: dict[tuple[str, str, str], str] = {}
        self._stopping = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=thread_prefix
        )

    def shutdown(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, key: Key) -> None:
        """Work through `key`'s items (`Outbox.offer` said no one does yet)."""
        try:
            self._pool.submit(self._drain, key)
        except RuntimeError:  # shutting down
            with self._lock:
                self._outbox.not_started(key)

    def _drain(self, key: Key) -> None:
        """Send one ModelSync's items in order, one at a time."""
        while not self._stopping.is_set():
            with self._lock:
                item = self._outbox.take(key)
            if item is None:
                return
            try:
                self._send(item)
            except Exception:  # a fault of ours must not stop the other items
                log.exception("%s/%s: sending failed", *key)

    def _send(self, item: Item) -> None:
        raise NotImplementedError
