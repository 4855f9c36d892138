"""Serve, the inference gate's I/O: spec.validation's samples sent to one new pod.

The operator sends each sample straight to the pod (its IP and the model's port,
never through the Service, which the pod is not in yet), off the reconcile
workers as analysis.py does: a reconcile asks for the pod's verdict, gets None
while the samples run, and the model is queued again when they are done. Each
request is bounded every way: one connection per sample over HTTP/1.0 (no
redirect followed, no keep-alive), `timeoutSeconds` from connect to the last
byte (and POD_DEADLINE_SECONDS for all the samples of a pod), at most BODY_LIMIT
bytes of answer read. Only an address the pod's own status gives is asked, and
never the node's (a host-network pod shares it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Hashable

from modelsync.api.modeldeployment import Sample, Validation
from modelsync.kube.slots import Slots, Turn
from modelsync.serving import validation
from modelsync.serving.analysis import AnswerError, _answer
from modelsync.serving.validation import Answer, Verdict

BODY_LIMIT = 1024 * 1024  # an answer to one sample
CONCURRENCY = 8  # pods validated at once (each holds one socket at a time)
RETRY_SECONDS = 5.0  # before an unreachable pod is tried again
# All the samples of one pod, at most: a slot is not one tenant's for 32 samples x 60 s
# (the default of the setting validation_pod_seconds).
POD_DEADLINE_SECONDS = 120.0

Pod = tuple[str, str]  # a pod's namespace and name


def address_refusal(pod_ip: str, host_ip: str) -> str:
    """Why the operator will not send samples to `pod_ip`, or ""."""
    try:
        address = ipaddress.ip_address(pod_ip)
    except ValueError:
        return f"pod IP {pod_ip!r} is not an address"
    if pod_ip == host_ip:
        return "the pod shares its node's address (hostNetwork); only pod addresses are validated"
    # An IPv4-mapped address (::ffff:127.0.0.1) is the IPv4 one on the wire; the
    # unspecified ones (0.0.0.0, ::) are this host's own addresses to connect().
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    for seen in (address, mapped) if mapped is not None else (address,):
        if seen.is_loopback or seen.is_link_local or seen.is_multicast or seen.is_unspecified:
            return f"pod IP {pod_ip} is not a pod address"
    return ""


def _request(sample: Sample, host: str, port: int) -> bytes:
    body = b"" if sample.body is None else json.dumps(sample.body).encode()
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = (
        f"{sample.method} {sample.path} HTTP/1.0\r\nHost: {netloc}\r\n"
        "Accept: application/json\r\nUser-Agent: modelsync-validation\r\nConnection: close\r\n"
    )
    if sample.body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def send(sample: Sample, host: str, port: int, timeout: float) -> Answer:
    """One sample to `host:port`: the answer, or why none came. No connection at all is
    `unreachable` (tried again later); a connection that then fails is the answer."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as error:
        why = "timed out" if isinstance(error, TimeoutError) else str(error)
        return Answer(error=f"pod {host}:{port} unreachable: {why}", unreachable=True)
    try:
        writer.write(_request(sample, host, port))
        remaining = max(0.001, timeout - (time.monotonic() - started))
        status, body = await asyncio.wait_for(_exchange(writer, reader), remaining)
    except TimeoutError:
        return Answer(error=f"no whole answer within {timeout:g}s")
    except AnswerError as error:
        return Answer(error=f"answer refused: {error}")
    except (OSError, ValueError, UnicodeError) as error:
        return Answer(error=f"the connection failed: {error}")
    finally:
        writer.close()
    return Answer(status=status, body=body, seconds=time.monotonic() - started)


async def _exchange(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader
) -> tuple[int, bytes]:
    await writer.drain()
    return await _answer(reader, BODY_LIMIT)


class Gate:
    """Verdicts on pods for the reconcile threads, worked out on `loop`; `wake(key)`
    queues the model again when one is in. Thread-safe.

    The slots (`CONCURRENCY` pods at once, each for `pod_seconds` at most) are shared
    by namespace (kube/shares.py): one tenant's silent pods hold at most the slots they
    had while another tenant's pod waits, never all of them for all of their pods."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        wake: Callable[[Hashable], None],
        pod_seconds: float | None = None,
    ) -> None:
        self.loop = loop
        self.wake = wake
        self.pod_seconds = POD_DEADLINE_SECONDS if pod_seconds is None else pod_seconds
        self._lock = threading.Lock()
        self._running: dict[Pod, tuple[Hashable, concurrent.futures.Future[Verdict], Turn]] = {}
        self._retry_at: dict[Pod, float] = {}
        # When each pod's attempt first got a slot (an unreachable pod's retries keep it).
        self._granted: dict[Pod, tuple[Hashable, float]] = {}
        self._slots = Slots(loop, CONCURRENCY)

    def verdict(
        self,
        model: Hashable,
        pod: Pod,
        attempt: Hashable,
        target: tuple[str, int],
        wanted: Validation,
    ) -> Verdict | None:
        """The verdict on `pod` ((namespace, name), validated as `attempt`: the spec it
        runs) or None while its samples wait for a slot or run, or while an unreachable
        pod waits to be tried again."""
        with self._lock:
            running = self._running.get(pod)
            if running is not None and running[0] == attempt:
                if not running[1].done():
                    return None
                del self._running[pod]
                found = running[1].result()
                if found.result is validation.Result.UNREACHABLE:
                    self._retry_at[pod] = time.monotonic() + RETRY_SECONDS
                else:
                    self._granted.pop(pod, None)
                return found
            if running is not None:
                running[1].cancel()  # the pod runs another spec now: that answer is moot
                self._slots.leave(running[2])
            if time.monotonic() < self._retry_at.get(pod, 0.0):
                return None  # the reconcile that saw it unreachable asked to come back
            self._retry_at.pop(pod, None)
            turn = self._slots.join(pod[0])  # in line now: its place is known at once
            future = asyncio.run_coroutine_threadsafe(
                self._validate(pod, attempt, turn, target, wanted), self.loop
            )
            self._running[pod] = (attempt, future, turn)
        future.add_done_callback(lambda done: None if done.cancelled() else self.wake(model))
        return None

    def ahead(self, pod: Pod) -> int | None:
        """How many pods get a slot before `pod`'s samples; None unless it waits for one."""
        with self._lock:
            running = self._running.get(pod)
        return None if running is None else self._slots.ahead(running[2])

    def since_granted(self, pod: Pod) -> float | None:
        """Seconds since `pod`'s samples (its current attempt) first got a slot."""
        with self._lock:
            found = self._granted.get(pod)
            running = self._running.get(pod)
        if found is None or (running is not None and running[0] != found[0]):
            return None
        return time.monotonic() - found[1]

    def forget(self, pod: Pod) -> None:
        """The pod is gone: drop what is known of it."""
        with self._lock:
            running = self._running.pop(pod, None)
            self._retry_at.pop(pod, None)
            self._granted.pop(pod, None)
        if running is not None:
            running[1].cancel()
            self._slots.leave(running[2])  # its coroutine may never have started

    async def _validate(
        self, pod: Pod, attempt: Hashable, turn: Turn, target: tuple[str, int], wanted: Validation
    ) -> Verdict:
        answers: list[Answer] = []
        try:
            await self._slots.wait(turn)
            with self._lock:
                first = self._granted.get(pod)
                if first is None or first[0] != attempt:
                    self._granted[pod] = (attempt, turn.granted_at or time.monotonic())
            ends = time.monotonic() + self.pod_seconds
            for sample in wanted.samples:
                left = min(float(wanted.timeout_seconds), ends - time.monotonic())
                if left <= 0:
                    spent = f"not sent: the pod's {self.pod_seconds:g}s for all samples ran out"
                    answers.append(Answer(error=spent))
                    continue
                answer = await send(sample, *target, left)
                answers.append(answer)
                if answer.unreachable:
                    break
        finally:
            self._slots.leave(turn)
        if answers[-1].unreachable:
            return validation.verdict(wanted, answers[-1:])
        return validation.verdict(wanted, answers)
