"""Leader election on a coordination.k8s.io Lease, so that replicas never both act.

One replica holds the Lease and renews it; the others wait. A leader that cannot
renew in time stops (its pod restarts and waits like the rest); a Lease not
renewed for its duration is taken over. Times are the Lease's own (RFC 3339 with
microseconds), as client-go writes them.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
from typing import Any

import kubernetes
import urllib3
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

from modelsync.api import constants as c

log = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _format(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}"


class LeaseLock:
    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        holder: str,
        lease_seconds: int = 15,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.labels = labels or {}  # what the Lease publishes (an operator's shard)
        self.leases = DynamicClient(client).resources.get(
            api_version="coordination.k8s.io/v1", kind="Lease"
        )
        self.namespace, self.name, self.holder = namespace, name, holder
        self.lease_seconds = lease_seconds

    def try_acquire(self) -> bool:
        """Take or renew the Lease; False while another holder's is still valid."""
        now = _now()
        try:
            lease: dict[str, Any] = self.leases.get(
                name=self.name, namespace=self.namespace
            ).to_dict()
        except NotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "labels": dict(self.labels),
                },
                "spec": {
                    "holderIdentity": self.holder,
                    "leaseDurationSeconds": self.lease_seconds,
                    "acquireTime": _format(now),
                    "renewTime": _format(now),
                    "leaseTransitions": 0,
                },
            }
            try:
                self.leases.create(body=body, namespace=self.namespace)
            except ConflictError:
                return False
            return True
        spec = lease.get("spec") or {}
        mine = spec.get("holderIdentity") == self.holder
        renewed = spec.get("renewTime")
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or _parse(renewed) + datetime.timedelta(seconds=duration) < now
        released = not spec.get("holderIdentity")
        if not mine and not expired and not released:
            return False
        spec = dict(
            spec,
            holderIdentity=self.holder,
            renewTime=_format(now),
            leaseDurationSeconds=self.lease_seconds,
        )
        if not mine:
            spec["acquireTime"] = _format(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = spec
        if self.labels:
            meta = lease.setdefault("metadata", {})
            meta["labels"] = {**(meta.get("labels") or {}), **self.labels}
        try:  # the resourceVersion makes this a compare-and-swap
            self.leases.replace(body=lease, namespace=self.namespace)
        except ConflictError:
            return False
        return True

    def release(self) -> bool:
        """Give the Lease up, as client-go's ReleaseOnCancel does: a standby takes it at
        its next try instead of waiting out `lease_seconds`. Only while it is still ours
        (a compare-and-swap); False when it was not."""
        try:
            lease: dict[str, Any] = self.leases.get(
                name=self.name, namespace=self.namespace
            ).to_dict()
        except NotFoundError:
            return False
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.holder:
            return False
        lease["spec"] = dict(spec, holderIdentity="", renewTime=_format(_now()))
        try:
            self.leases.replace(body=lease, namespace=self.namespace)
        except ConflictError:
            return False
        log.info("released the Lease %s/%s", self.namespace, self.name)
        return True


def wait_to_lead(lock: LeaseLock, stop: threading.Event, retry_seconds: float = 2.0) -> bool:
    """Block until this replica leads (True) or `stop` is set (False)."""
    announced = False
    while not stop.is_set():
        try:
            if lock.try_acquire():
                log.info("leading as %s (Lease %s/%s)", lock.holder, lock.namespace, lock.name)
                return True
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError) as error:
            log.warning("leader election: %s", getattr(error, "reason", None) or error)
        if not announced:
            log.info("another replica leads; waiting (Lease %s/%s)", lock.namespace, lock.name)
            announced = True
        stop.wait(retry_seconds)
    return False


def keep_leading(lock: LeaseLock, stop: threading.Event, lost: threading.Event) -> None:
    """Renew every third of the Lease; set `lost` (and stop) when it could not be kept."""
    period = max(1.0, lock.lease_seconds / 3)
    last = time.monotonic()
    while not stop.wait(period):
        try:
            if lock.try_acquire():
                last = time.monotonic()
                continue
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError) as error:
            log.warning("renewing the Lease: %s", getattr(error, "reason", None) or error)
        if time.monotonic() - last > lock.lease_seconds * 2 / 3:
            log.error("lost the Lease %s/%s: stopping", lock.namespace, lock.name)
            lost.set()
            return


def mark_pod(client: kubernetes.client.ApiClient, namespace: str, pod: str, leading: bool) -> None:
    """Label this replica's pod as the leader (or no longer); a failure is logged only:
    webhooks then reach a standby, which answers 503, and the interval still syncs."""
    patch = {"metadata": {"labels": {c.LABEL_LEADER: "true" if leading else None}}}
    try:
        kubernetes.client.CoreV1Api(client).patch_namespaced_pod(pod, namespace, patch)
    except (kubernetes.client.ApiException, OSError) as error:
        log.warning("could not label pod %s/%s as leader=%s: %s", namespace, pod, leading, error)
