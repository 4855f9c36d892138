from __future__ import annotations

import asyncio

from modelsync.kube.workqueue import WorkQueue


def test_a_key_waits_once_and_is_redone_if_it_changed_while_active() -> None:
    async def scenario() -> list[object]:
        queue = WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        first = await queue.get()
        queue.add(first)  # changed while being worked on
        queue.done(first)
        seen = [first, await queue.get(), await queue.get()]
        return seen

    assert asyncio.run(scenario()) == ["a", "b", "a"]


def test_failures_come_back_with_growing_delay() -> None:
    async def scenario() -> tuple[float | None, float | None, object]:
        queue = WorkQueue(retry_seconds=0.01, max_retry_seconds=0.02)
        queue.add("a")
        key = await queue.get()
        first = queue.done(key, failed=True)
        key = await asyncio.wait_for(queue.get(), timeout=5)
        second = queue.done(key, failed=True)
        again = await asyncio.wait_for(queue.get(), timeout=5)
        return first, second, again

    first, second, again = asyncio.run(scenario())
    assert (first, second, again) == (0.01, 0.02, "a")


def test_a_scheduled_key_is_pending_until_it_fires() -> None:
    async def scenario() -> tuple[bool, bool, object, bool]:
        queue = WorkQueue()
        before = queue.scheduled("a")
        queue.schedule("a", 0.01)
        pending = queue.scheduled("a")
        key = await asyncio.wait_for(queue.get(), timeout=5)
        return before, pending, key, queue.scheduled("a")

    assert asyncio.run(scenario()) == (False, True, "a", False)
