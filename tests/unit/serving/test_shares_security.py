"""Issue 29 item 7: one tenant's silent pods do not hold every validation slot while
another tenant's pod waits, the progress deadline does not run while a pod waits for a
slot, and the workers are shared by namespace. The gate is the real one, sending real
requests to listeners on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Hashable, Iterator

import pytest

from modelsync.api import constants as c
from modelsync.api.modeldeployment import Sample, Validation
from modelsync.kube.workqueue import WorkQueue
from modelsync.serving import gate, rollout
from modelsync.serving.validation import Result, Verdict
from tests.unit.serving.test_validation import past_deadline

HOLD_SECONDS = 2.0  # a silent pod's hold on its slot, shortened for the test
NOISY_PODS = 40


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running

    async def cancel_the_rest() -> None:
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(cancel_the_rest(), running).result(timeout=5)
    running.call_soon_threadsafe(running.stop)
    thread.join(timeout=5)
    running.close()


class Silent:
    """Accepts every connection and never answers: a pod that holds its slot."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


class Answering:
    """Answers every request 200 with a JSON body: a pod that passes its sample."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 11\r\n\r\n{"ok":true}'
                )

    def close(self) -> None:
        self.server.close()


WANTED = Validation(samples=(Sample(name="ping", path="/ping"),), timeout_seconds=60)


def until(predicate: object, seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.02)
    return False


def test_security_the_gate_slots_are_shared_by_namespace(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """40 silent pods of one tenant take every slot when alone (work-conserving); the
    other tenant's pod gets the next slot that comes free, within one hold, not after
    the 40 pods' five rounds of holds."""
    silent, answering = Silent(), Answering()
    try:
        woken: list[Hashable] = []
        checker = gate.Gate(loop, woken.append, pod_seconds=HOLD_SECONDS)
        for i in range(NOISY_PODS):
            pod = ("noisy", f"p{i}")
            checker.verdict(("md", "noisy", "m"), pod, ("h", i), ("127.0.0.1", silent.port), WANTED)
        # Alone, the noisy tenant uses every slot.
        assert until(lambda: len(silent.accepted) == gate.CONCURRENCY, 5), len(silent.accepted)
        started = time.monotonic()
        quiet = ("quiet", "p0")
        target = ("127.0.0.1", answering.port)
        found: Verdict | None = None

        def decided() -> bool:
            nonlocal found
            found = checker.verdict(("md", "quiet", "m"), quiet, ("h", 0), target, WANTED)
            return found is not None

        assert until(decided, HOLD_SECONDS * 2 + 1), "the quiet tenant's pod waited behind all"
        assert found is not None
        assert found.result is Result.PASSED, found
        assert time.monotonic() - started < HOLD_SECONDS * 2 + 1
    finally:
        silent.close()
        answering.close()


def new_pod() -> dict[str, object]:
    return {
        "metadata": {"name": "new", "labels": {c.LABEL_SPEC_HASH: "bbb"}},
        "status": {
            "podIP": "198.18.96.9",
            "conditions": [{"type": "ContainersReady", "status": "True"}],
        },
    }


def test_security_the_progress_deadline_waits_for_a_validation_slot() -> None:
    """kube-controller-manager's ProgressDeadlineExceeded while a new pod waits for a
    slot fails nothing; the operator's own deadline runs from the slot's grant."""
    waiting = rollout.GateWait(waiting=1, ahead=7, since_granted=None)
    assert rollout.detect_failure(past_deadline(), [new_pod()], "bbb", 3, gate=waiting) is None
    assert rollout.slot_message(waiting) == "waiting for a validation slot: 7 ahead"
    granted = rollout.GateWait(waiting=0, ahead=0, since_granted=30.0)
    assert rollout.detect_failure(past_deadline(), [new_pod()], "bbb", 3, gate=granted) is None
    late = rollout.GateWait(waiting=0, ahead=0, since_granted=90.0)
    failed = rollout.detect_failure(past_deadline(), [new_pod()], "bbb", 3, gate=late)
    assert failed is not None
    assert failed.reason == c.REASON_PROGRESS_DEADLINE_EXCEEDED
    # No pod of the revision ever asked the gate: kube-controller-manager's word stands.
    failed = rollout.detect_failure(past_deadline(), [new_pod()], "bbb", 3, gate=None)
    assert failed is not None
    assert failed.reason == c.REASON_PROGRESS_DEADLINE_EXCEEDED


def test_security_the_work_queue_shares_workers_by_namespace() -> None:
    """A namespace with 1,000 keys queued first: another namespace's key is taken next,
    while the first holds a worker; alone, the first is taken in its order."""

    async def scenario() -> tuple[list[Hashable], list[Hashable]]:
        queue = WorkQueue(namespace_of=lambda key: str(key[1]) if isinstance(key, tuple) else "")
        for i in range(1000):
            queue.add(("ModelDeployment", "noisy", f"m{i}"))
        queue.add(("ModelDeployment", "quiet", "m0"))
        taken = [await queue.get(), await queue.get(), await queue.get()]
        alone = WorkQueue(namespace_of=lambda key: "same")
        for i in range(3):
            alone.add(("ModelDeployment", "noisy", f"m{i}"))
        return taken, [await alone.get() for _ in range(3)]

    taken, alone = asyncio.run(scenario())
    assert taken == [
        ("ModelDeployment", "noisy", "m0"),
        ("ModelDeployment", "quiet", "m0"),
        ("ModelDeployment", "noisy", "m1"),
    ]
    assert alone == [("ModelDeployment", "noisy", f"m{i}") for i in range(3)]
