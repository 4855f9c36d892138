"""Sync: one ModelSync, from its git repository to the cluster, as an ordered list of
small steps that return early on failure; one place records the outcome.

fetch (resolve the ref; write the revision's tree to a snapshot) -> render (plain
files, Kustomize or Helm, into objects) -> validate (pure checks) -> plan (each object
against its live self; a server-side dry run of each that would change) -> apply
(staged, unchanged objects not written) -> prune (by inventory, with safety limits)
-> health (the applied models Ready?) -> record (status, history, event, metrics).
A revision that fails any step before apply is rejected as a whole: nothing of it is
written, and what the last good revision applied keeps running.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import logging
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes

from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.api.conditions import Observed
from modelsync.api.modelsync import parse_spec
from modelsync.gitops import modelhealth, samples, writeback
from modelsync.gitops import prune as prunemod
from modelsync.gitops import render as rendering
from modelsync.gitops.apply import Applier, OwnershipError, inventory_of
from modelsync.gitops.clusters import ClusterError, Clusters
from modelsync.gitops.commitstatus import PullRequest, StatusWriter
from modelsync.gitops.disk import DiskFullError
from modelsync.gitops.fetch import (
    Credentials,
    FetchError,
    GitFetcher,
    Ref,
    Revision,
    RevisionTooLargeError,
)
from modelsync.gitops.load import RevisionError, SnapshotChangedError
from modelsync.gitops.notify import Notifier
from modelsync.gitops.plan import ChangeSet, Planned
from modelsync.gitops.settings import SyncSettings
from modelsync.gitops.status import (
    ContentFailure,
    Outcome,
    after_sync,
    cut,
    healthy_condition,
    judge_again,
    record,
    set_models_not_ready,
    sync_trigger,
)
from modelsync.gitops.validate import content_errors, explain, policy_errors, policy_for
from modelsync.kube import remote as remotemod
from modelsync.kube.client import Kube, Manifest, api_message, forbidden_here, transient
from modelsync.telemetry import logs, metrics

log = logging.getLogger(__name__)

MAX_ERRORS_SHOWN = 20
# A failed fetch (git host down, network blip) is tried again after this, doubling each
# time, up to the interval: not an interval later, when that may be an hour.
# A sync the environment failed (or a fault of ours) is tried again after 1 s, doubling
# to 5 min, each delay jittered by up to a fifth so that many ModelSyncs do not come
# back in step after an API server restart.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0
RETRY_JITTER = 0.2
# The reasons after which a sync is tried again soon (the environment may mend them);
# any other waits for the interval, a change in git, or a change of the ModelSync.
RETRIED_REASONS = frozenset(
    {
        c.REASON_FETCH_FAILED,
        c.REASON_SERVICE_ACCOUNT_NOT_FOUND,
        c.REASON_NAMESPACE_NOT_ENABLED,
        c.REASON_RETRYING,
        c.REASON_INTERNAL_ERROR,
        c.REASON_PRUNE_FAILED,  # an admission policy or a RoleBinding may change
        c.REASON_FORBIDDEN,
        c.REASON_KUBECONFIG_INVALID,  # a Secret is not watched: looked at again
        c.REASON_CLUSTER_UNREACHABLE,
    }
)
# Errors of the environment besides the API server's: tried again like them (Retrying).
ENVIRONMENT_ERRORS = (DiskFullError, SnapshotChangedError)
# A remote cluster is not watched: while a revision's models there are not Ready yet,
# they are looked at again this soon (not an interval later).
REMOTE_HEALTH_SECONDS = 15.0


def retry_delay(failures: int, interval: float, jitter: float) -> float:
    """Seconds before attempt `failures + 1` after `failures` failures in a row: 1 s
    doubling to 5 min (never past the interval), times (1 + jitter), jitter in
    [-RETRY_JITTER, RETRY_JITTER]."""
    base = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * float(2 ** min(failures, 16)))
    return max(RETRY_FIRST_SECONDS / 2, min(interval, base) * (1.0 + jitter))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# The shortest interval: the CRD refuses less, and the code clamps to it too, for objects
# stored before that rule (or a CRD without it), since "0s" would fetch without pause.
MIN_INTERVAL_SECONDS = 5.0


def interval_seconds(text: str | None, default: float = 60.0) -> float:
    """A Go-style duration ("1m30s") in seconds, never below MIN_INTERVAL_SECONDS."""
    parts = _DURATION.findall(text or "")
    seconds = sum(float(n) * _UNIT[u] for n, u in parts) if parts else default
    return max(MIN_INTERVAL_SECONDS, seconds)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class NoAccountError(Exception):
    """No ServiceAccount to apply a ModelSync's content as; the message says why."""


class SyncReconciler:
    def __init__(
        self,
        kube: Kube,
        fetcher: GitFetcher,
        cache: Any,
        clock: Callable[[], datetime.datetime] = _now,
        watches: Callable[[str], bool] = lambda _: False,
        *,
        settings: SyncSettings,
        statuses: StatusWriter | None = None,
        clusters: Clusters | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.clusters = clusters or Clusters(kube, self.settings)
        self.statuses = statuses  # commit statuses back to the git host (spec.notify)
        self.notifier = notifier  # notifications to people (spec.notify.receivers)
        self.kube = kube
        self.fetcher = fetcher
        self.cache = cache
        self.clock = clock
        self.watches = watches  # namespaces whose ModelDeployments the cache holds
        self._failures: dict[tuple[str, str], int] = {}  # in a row, per ModelSync
        # A sync and a health refresh of one ModelSync run one at a time: each writes
        # conditions computed from the status it read.
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # A remote ModelSync's models' health as its last sync read it there (not watched).
        self._remote_seen: dict[tuple[str, str], modelhealth.ModelsHealth] = {}
        # The last refused revision of each ModelSync, judged again only as it backs off.
        self._refused: dict[tuple[str, str], ContentFailure] = {}
        self.jitter: Callable[[], float] = lambda: random.uniform(-RETRY_JITTER, RETRY_JITTER)  # noqa: S311 - spreading retries, not security

    def forget(self, namespace: str, name: str) -> None:
        """The ModelSync is gone (deleted, or another shard's now): nothing kept for it
        stays (a tenant creating and deleting ModelSyncs must not grow the operator)."""
        key = (namespace, name)
        with self._locks_guard:
            self._locks.pop(key, None)  # one held by a sync running now is its own
        self._failures.pop(key, None)
        self._refused.pop(key, None)
        self._remote_seen.pop(key, None)
        self.clusters.forget(key)
        if self.statuses is not None:
            self.statuses.forget(namespace, name)
        if self.notifier is not None:
            self.notifier.forget(c.MODELSYNC_KIND, namespace, name)
        metrics.sync_gone(namespace, name)

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    @contextmanager
    def _one_at_a_time(self, namespace: str, name: str) -> Iterator[None]:
        with self._lock(namespace, name):
            yield

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Sync once. Returns seconds until the next periodic sync (None: none needed)."""
        with self._one_at_a_time(namespace, name):
            return self._reconcile(namespace, name)

    def refresh_health(self, namespace: str, name: str) -> bool:
        """A model of the ModelSync's inventory became Ready or stopped being Ready:
        recompute Healthy (and Ready, when the applied revision is the latest attempted
        and only its models were wanting) from the cache. No fetch, no apply: git has
        not changed, and a sync would cost a round trip to the git host per event.
        False, and nothing done, while a sync of that ModelSync runs: waiting for it
        would hold a worker for as long as a large sync takes; ask again later."""
        lock = self._lock(namespace, name)
        if not lock.acquire(blocking=False):
            return False
        try:
            self._refresh_health(namespace, name)
        finally:
            lock.release()
        return True

    def _refresh_health(self, namespace: str, name: str) -> None:
        ms = self.cache.get(c.MODELSYNC_KIND, namespace, name)
        if ms is None or ms["metadata"].get("deletionTimestamp"):
            return
        if parse_spec(ms["spec"]).kube_config_secret_ref:
            return  # its models are in another cluster: looked at by its syncs
        status = dict(ms.get("status") or {})
        revision = status.get("lastAppliedRevision")
        if not revision:
            return
        health = self._health(status.get("inventory") or [])
        observed = [healthy_condition(health)]
        ready = conditions.find(status.get("conditions"), c.READY) or {}
        waiting = (
            ready.get("reason") in (c.REASON_SUCCEEDED, c.REASON_MODELS_NOT_READY)
            and status.get("lastAttemptedRevision") == revision
            and status.get("observedGeneration") == ms["metadata"].get("generation")
        )
        was_ready = ready.get("status") == "True"
        if waiting and not (was_ready and health.healthy):
            last = (status.get("history") or [{}])[0]
            observed.append(_ready_condition(revision, health, last))
        set_models_not_ready(status, health)
        generation = int(status.get("observedGeneration") or 0)
        status["conditions"] = conditions.merge(
            status.get("conditions"), observed, generation, self.clock()
        )
        self._write_status(ms, status)
        if self.statuses is not None:
            self.statuses.observe(ms, status)
        if self.notifier is not None:
            self.notifier.observe_sync(ms, ms.get("status") or {}, status)
        if waiting and was_ready != health.healthy:
            # Serving at last: the revision is synced (the event a sync that found its
            # models Ready would have posted). No longer serving: a warning.
            message = observed[-1].message
            self.kube.event(
                ms,
                c.MODELSYNC_KIND,
                c.EVENT_SYNCED if health.healthy else c.EVENT_MODELS_NOT_READY,
                message,
                action="Health",
                warning=not health.healthy,
            )
            log.info("sync %s/%s: %s", namespace, name, message)

    def _health(
        self,
        inventory: list[dict[str, str]],
        fresh: dict[tuple[str, str], Manifest | None] | None = None,
    ) -> modelhealth.ModelsHealth:
        def lookup(namespace: str, name: str) -> Manifest | None:
            if fresh and (namespace, name) in fresh:
                return fresh[(namespace, name)]
            found: Manifest | None = self.cache.get(c.MODELDEPLOYMENT_KIND, namespace, name)
            return found

        return modelhealth.assess(inventory, lookup, self.watches)

    def _health_for(
        self, ms: Manifest
    ) -> Callable[[list[dict[str, str]]], modelhealth.ModelsHealth]:
        """How the models of the ModelSync's inventory are: from the cache, or for a remote
        ModelSync as its last sync read them there (not reached yet: said so)."""
        if not parse_spec(ms["spec"]).kube_config_secret_ref:
            return self._health
        seen = self._remote_seen.get((ms["metadata"]["namespace"], ms["metadata"]["name"]))
        if seen is not None:
            return lambda _: seen
        return lambda inventory: modelhealth.ModelsHealth(
            len(owned_models(inventory)),
            [(f"{ns}/{n}", "cluster not reached") for ns, n in sorted(owned_models(inventory))],
        )

    def _written_models(self, applier: Applier) -> dict[tuple[str, str], Manifest | None]:
        """The ModelDeployments this sync just created or changed, as the API server
        answered the write: the watch may not have brought their new generation yet, and
        the cache's copy, Ready for the old spec, would make a revision Ready before its
        models serve it."""
        return {
            (namespace, name): manifest
            for (group, kind, namespace, name), manifest in applier.written.items()
            if (group, kind) == (c.GROUP, c.MODELDEPLOYMENT_KIND) and self.watches(namespace)
        }

    def _reconcile(self, namespace: str, name: str) -> float | None:
        ms = self.cache.get(c.MODELSYNC_KIND, namespace, name)
        if ms is None or ms["metadata"].get("deletionTimestamp"):
            return None
        spec = parse_spec(ms["spec"])
        if spec.suspend:
            self._record_suspended(ms)
            return None
        started = self.clock()
        interval = interval_seconds(spec.interval)
        remote = bool(spec.kube_config_secret_ref)
        # What the sync holds until it ends (its snapshot's lease), released before the
        # outcome is recorded.
        with metrics.SYNC_SECONDS.labels(namespace, name).time():
            try:
                with contextlib.ExitStack() as held:
                    outcome = self._sync(ms, held)
            except Exception as error:
                environment = isinstance(error, kubernetes.client.ApiException) and transient(error)
                # The git cache full of running syncs' work, a snapshot changed under us.
                environment = environment or isinstance(error, ENVIRONMENT_ERRORS)
                # A remote cluster gone in the middle of a sync: no answer at all.
                gone = remote and remotemod.unreachable(error) is not None
                if not (environment or gone):  # the steps turn answers about content into errors
                    log.exception("sync %s/%s failed", namespace, name)
                reason = c.REASON_RETRYING if environment else c.REASON_INTERNAL_ERROR
                reason = c.REASON_CLUSTER_UNREACHABLE if gone else reason
                outcome = self._failed(namespace, name, interval, reason, error)
            if not outcome.repeated:  # the same refusal: status says it already
                self._record(ms, outcome, started)
        key = (namespace, name)
        remembered = after_sync(
            self._refused.get(key),
            outcome,
            sync_trigger(ms),
            started,
            interval,
            RETRIED_REASONS,
        )
        if remembered is None:
            self._refused.pop(key, None)
        else:
            self._refused[key] = remembered
        metrics.SYNCS.labels(namespace, name, outcome.reason).inc()
        for action, objects in outcome.changes.by_action().items():
            metrics.OBJECTS_APPLIED.labels(action=action).inc(len(objects))
        delay = self._next_sync(namespace, name, outcome, interval)
        if remote and outcome.reason == c.REASON_MODELS_NOT_READY:
            return min(delay, REMOTE_HEALTH_SECONDS)
        return delay

    def _failed(
        self, namespace: str, name: str, interval: float, reason: str, error: Exception
    ) -> Outcome:
        """The outcome of a sync the environment (or a fault of ours) broke off: what
        it says and when it is tried again. Nothing of the revision is judged by it."""
        delay = self._retry_in(namespace, name, interval)
        why = (
            api_message(error)
            if isinstance(error, kubernetes.client.ApiException)
            else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        )
        outcome = Outcome(reason=reason, message=f"retrying in {delay:.0f}s: {why}"[:1024])
        outcome.retry_in = delay
        return outcome

    def _retry_in(self, namespace: str, name: str, interval: float) -> float:
        key = (namespace, name)
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return retry_delay(failures, interval, self.jitter())

    def _next_sync(self, namespace: str, name: str, outcome: Outcome, interval: float) -> float:
        """The interval; after a failure the environment may mend (a git host down, an
        account not yet created, the API server restarting), a short delay that doubles
        with each failure in a row. The attempt is in status already: nothing is raised."""
        if outcome.retry_in is not None:
            return outcome.retry_in
        if outcome.reason not in RETRIED_REASONS:
            self._failures.pop((namespace, name), None)
            return interval
        return self._retry_in(namespace, name, interval)

    # ------------------------------------------------------------------ the steps

    def _sync(self, ms: Manifest, held: contextlib.ExitStack) -> Outcome:  # noqa: C901 - the steps of one sync, in order
        spec, meta = ms["spec"], ms["metadata"]
        typed = parse_spec(spec)
        status = ms.get("status") or {}
        outcome = Outcome()
        policy, refusal = policy_for(
            meta["namespace"],
            spec.get("targetNamespace"),
            other_namespaces_from=self.settings.allow_other_namespaces,
            cluster_scoped_from=self.settings.allow_cluster_scoped,
        )
        if refusal:
            outcome.reason, outcome.message = c.REASON_TARGET_NAMESPACE_NOT_ALLOWED, refusal
            outcome.stalled = True
            return outcome
        try:
            # Another cluster (spec.kubeConfig): its kubeconfig's user applies there.
            target = self.clusters.target(ms)
            writer = target or self._applying_as(ms)
            credentials = self._credentials(meta["namespace"], spec["repo"].get("secretRef"))
        except ClusterError as error:
            outcome.reason, outcome.message = error.reason, str(error)
            outcome.stalled, outcome.headline = error.stalled, error.headline
            return outcome
        except NoAccountError as error:
            outcome.reason, outcome.message = c.REASON_SERVICE_ACCOUNT_NOT_FOUND, str(error)
            return outcome
        except FetchError as error:  # its git Secret is missing
            outcome.reason, outcome.message = c.REASON_FETCH_FAILED, str(error)
            return outcome
        except kubernetes.client.ApiException as error:
            if error.status != 403:
                raise
            # The operator reads Secrets and impersonates only where the platform lets it.
            outcome.reason = c.REASON_NAMESPACE_NOT_ENABLED
            outcome.message = (
                f"namespace {meta['namespace']!r} not enabled for modelsync "
                f"({c.NAMESPACE_NOT_ENABLED_FIX}): the operator may not read its Secrets "
                "or act as its ServiceAccounts"
            )
            return outcome
        try:
            revision = self.fetcher.resolve(
                spec["repo"]["url"], Ref.from_spec(spec["repo"].get("ref")), credentials
            )
            outcome.revision = revision.name
            last = self._refused.get((meta["namespace"], meta["name"]))
            if not judge_again(last, revision.name, sync_trigger(ms), self.clock()):
                assert last is not None
                return dataclasses.replace(last.outcome, repeated=True)
            if self.statuses is not None and revision.name != status.get("lastAttemptedRevision"):
                self.statuses.pending(ms, revision.name)
            # Leased until the sync ends: render, load, samples and plan read it.
            snapshot = held.enter_context(
                self.fetcher.leased(spec["repo"]["url"], revision, credentials)
            )
        except RevisionTooLargeError as error:
            # The content's fault: the same revision fails the same way until git changes.
            outcome.reason, outcome.stalled = c.REASON_REVISION_TOO_LARGE, True
            outcome.message = f"revision {revision.name}: {error}"
            return outcome
        except FetchError as error:
            outcome.reason, outcome.message = c.REASON_FETCH_FAILED, str(error)
            return outcome

        try:
            loaded = rendering.render_snapshot(
                snapshot,
                typed.path,
                typed.helm,
                self._render_settings(),
                namespace=spec.get("targetNamespace") or meta["namespace"],
                release=meta["name"],
            )
        except rendering.RendererMissingError as error:
            # The operator's installation, not the content: retried with backoff.
            outcome.reason, outcome.message = c.REASON_RENDERER_MISSING, str(error)
            return outcome
        applier = Applier(
            target or self.kube,
            writer,
            meta["namespace"],
            meta["name"],
            self._cached if target is None else None,
            shard=(meta.get("labels") or {}).get(c.LABEL_SHARD, ""),
        )
        # Our own resources first, before any request (as `modelsync validate` does).
        # spec.validation's sample files become the bodies the operator sends (inlined).
        errors = loaded.errors + samples.inline(loaded.objects, snapshot, loaded.reader(snapshot))
        # CEL rules are left to the dry run of `plan` (the API server's own evaluation).
        reader = loaded.reader(snapshot)
        errors += content_errors(loaded.objects, reader, rules=False)
        errors += policy_errors(loaded.objects, policy, applier.kube.scope)
        planned: list[Planned] = []
        if not errors:
            applied = {prunemod.key(entry) for entry in status.get("inventory") or []}
            planned, errors = applier.plan(
                loaded.objects, revision.name, applied, lambda obj: explain(obj, reader)
            )
        if errors:
            outcome.errors = errors
            outcome.reason, outcome.stalled = _content_failure(errors)
            if any(isinstance(error, OwnershipError) for error in errors):
                outcome.reason = c.REASON_OWNERSHIP_CONFLICT
            outcome.message = _describe_errors(revision, errors)
            outcome.headline = _errors_headline(errors)
            return outcome

        previous = status.get("inventory") or []
        current = inventory_of(loaded.objects)
        if not loaded.objects and previous and not typed.allow_empty:
            outcome.reason = c.REASON_EMPTY_REVISION
            outcome.message = (
                f"no objects under path {spec.get('path') or '/'!r}: nothing applied or pruned "
                "(set spec.allowEmpty to prune everything)"
            )
            return outcome

        self._record_intent(ms, previous, current)
        same = status.get("lastAppliedRevision") == revision.name
        changes, errors = applier.apply(planned, heal=typed.self_heal, same_revision=same)
        outcome.changes = changes
        if errors:
            outcome.errors = errors
            outcome.reason, outcome.stalled = _content_failure(errors)
            outcome.message = _describe_errors(revision, errors)
            outcome.headline = _errors_headline(errors)
            outcome.inventory = _merge_inventory(previous, current)
            return outcome

        plan = prunemod.plan(
            previous,
            current,
            enabled=typed.prune,
            allow_empty=typed.allow_empty,
            max_percent=typed.max_prune_percent,
        )
        changes.deleted, left, refused = applier.delete(plan.delete)
        # What could not be deleted stays in the inventory: the next sync tries again.
        outcome.inventory = current + plan.keep + [entry for entry, _ in refused]
        outcome.applied = True
        if refused:
            outcome.reason = c.REASON_PRUNE_FAILED
            outcome.prune_errors = sorted(message for _, message in refused)
            outcome.message = (
                f"applied revision {revision.name}: {changes.summary()}; but "
                f"{len(refused)} objects could not be pruned: " + "; ".join(outcome.prune_errors)
            )
            outcome.headline = (
                f"applied {revision.name}; {len(refused)} objects not pruned (status.errors)"
            )
            return outcome
        if plan.refusal:
            outcome.reason, outcome.message = c.REASON_PRUNE_REFUSED, plan.refusal
            return outcome
        if changes.drifted and not typed.self_heal:
            outcome.ready = True
            outcome.reason = c.REASON_DRIFT_DETECTED
            outcome.message = (
                f"revision {revision.name} applied, but {len(changes.drifted)} "
                "objects differ from git (selfHeal is off): " + "; ".join(changes.drifted[:5])
            )
            outcome.headline = (
                f"applied {revision.name}; {len(changes.drifted)} objects differ from git "
                f"(selfHeal is off), see history"
            )
            return outcome
        # A remote cluster's models: read there, once (its cluster is not watched).
        inventory = outcome.inventory or []
        models = None if target is None else remote_models(target, inventory)
        if models is not None:
            self._remote_seen[(meta["namespace"], meta["name"])] = modelhealth.assess(
                inventory, lambda *key: models.get(key), bool
            )
        rolled = self._rolled_back_models(meta["namespace"], meta["name"], current, models)
        rolled_back = [f"model {md['metadata']['name']}: {message}" for md, message in rolled]
        if rolled and typed.rollback_write_back:
            outcome.write_backs, outcome.write_back_error = self._write_back(
                ms, credentials, revision, rolled
            )
        if rolled_back:
            # Git says one thing, the cluster serves another: never "in sync".
            outcome.reason = c.REASON_ROLLED_BACK
            outcome.message = (
                f"applied revision {revision.name}: {changes.summary()}; but "
                f"rolled back, so the cluster differs from git: {'; '.join(rolled_back)}"
            )
            names = ", ".join(md["metadata"]["name"] for md, _ in rolled)
            outcome.headline = f"applied {revision.name}; rolled back, not as in git: {names}"
            return outcome
        health = (
            self._health(outcome.inventory, self._written_models(applier))
            if models is None
            else self._remote_seen[(meta["namespace"], meta["name"])]
        )
        if not health.healthy:
            # Applied, but not serving yet (or no longer): Ready waits for the models;
            # their Ready changes re-queue a health refresh, not another sync.
            observed = _ready_condition(revision.name, health)
            outcome.reason, outcome.message = observed.reason, observed.message
            return outcome
        outcome.ready, outcome.reason = True, c.REASON_SUCCEEDED
        outcome.message = f"applied revision {revision.name}: {changes.summary()}"
        if left:
            outcome.message += "; not pruned, no longer this ModelSync's: " + "; ".join(left[:5])
        return outcome

    def _record_intent(
        self, ms: Manifest, previous: list[dict[str, str]], current: list[dict[str, str]]
    ) -> None:
        """Before creating anything, put it in the inventory. The inventory is otherwise
        written when a sync ends: an operator killed while applying would forget what it
        had created, and whatever git drops before the next complete sync would never be
        pruned. One status write, only when the revision adds objects."""
        known = {prunemod.key(entry) for entry in previous}
        if all(prunemod.key(entry) in known for entry in current):
            return
        status = {**(ms.get("status") or {}), "inventory": _merge_inventory(previous, current)}
        self._write_status(ms, status)

    def _write_back(
        self,
        ms: Manifest,
        credentials: Credentials | None,
        revision: Revision,
        rolled: list[tuple[Manifest, str]],
    ) -> tuple[list[str], str]:
        """Push a rollback branch per rolled-back model (once: pushed ones are in status)."""
        done = list((ms.get("status") or {}).get("writeBacks") or [])
        spec = ms["spec"]
        for md, message in rolled:
            status = md.get("status") or {}
            failed, stable = status.get("failedGitRevision", ""), status.get("stableRevision", "")
            if not ("@sha1:" in failed and "@sha1:" in stable):
                continue  # not from git: nothing to write back to
            name = md["metadata"]["name"]
            branch = writeback.branch_name(name, writeback.sha_of(failed))
            # With a git host to tell (spec.notify), a pull request per model follows.
            git_host = (spec.get("notify") or {}).get("provider")
            pull = writeback.pull_request_branch(name) if git_host else None
            if branch not in done:
                try:
                    writeback.push_rollback_branch(
                        self.fetcher,
                        spec["repo"]["url"],
                        credentials,
                        model=name,
                        failed_revision=failed,
                        stable_revision=stable,
                        path=parse_spec(spec).path,
                        reason=message,
                        also=pull,
                    )
                except (writeback.RollbackError, FetchError) as error:
                    return done, f"could not push {branch}: {error}"
                log.info("pushed %s for %s/%s", branch, md["metadata"]["namespace"], name)
                done.append(branch)
            if pull and self.statuses is not None:
                self.statuses.pull_request(
                    ms,
                    PullRequest(
                        model=name,
                        head=pull,
                        base=revision.fetch_ref.removeprefix("refs/heads/"),
                        failed=failed,
                        restored=stable,
                        version=str(status.get("modelVersion") or "?"),
                        reason=message,
                    ),
                )
        return done, ""

    def _rolled_back_models(
        self,
        namespace: str,
        name: str,
        inventory: list[dict[str, str]],
        models: dict[tuple[str, str], Manifest] | None = None,
    ) -> list[tuple[Manifest, str]]:
        """The rolled-back ModelDeployments this ModelSync applied: those of its inventory.
        Labels alone would let anyone who can label a ModelDeployment (in any namespace)
        mark this ModelSync rolled back and have it push with this ModelSync's credentials.
        `models`: those of a remote cluster (read there), instead of the cache."""
        ours = owned_models(inventory)
        labels = {c.LABEL_SYNC_NAME: name, c.LABEL_SYNC_NAMESPACE: namespace}

        def rolled_back(md: Manifest) -> bool:
            return (md["metadata"].get("namespace", ""), md["metadata"]["name"]) in ours and (
                conditions.is_true((md.get("status") or {}).get("conditions"), c.ROLLED_BACK)
            )

        found = (
            self.cache.select(c.MODELDEPLOYMENT_KIND, rolled_back, labels=labels)
            if models is None
            else [md for md in models.values() if rolled_back(md)]
        )
        return [
            (md, str((conditions.find(md["status"]["conditions"], c.ROLLED_BACK) or {})["message"]))
            for md in found
        ]

    def _credentials(self, namespace: str, secret_ref: dict[str, str] | None) -> Credentials | None:
        if not secret_ref:
            return None
        secret = self.kube.get("v1", "Secret", namespace, secret_ref["name"])
        if secret is None:
            raise FetchError(f"Secret {secret_ref['name']!r} (spec.repo.secretRef) does not exist")
        if secret.get("type") != c.SECRET_TYPE_GIT:
            raise FetchError(
                f"Secret {secret_ref['name']!r} (spec.repo.secretRef) has type "
                f"{secret.get('type') or 'Opaque'!r}; only Secrets of type {c.SECRET_TYPE_GIT!r} "
                "are sent to a git server: create one with that type (kubectl create secret "
                f"generic {secret_ref['name']} --type={c.SECRET_TYPE_GIT} ...)"
            )
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return Credentials(
            username=data.get("username"),
            password=data.get("password") or data.get("token"),
            ssh_key=data.get("identity") or data.get("ssh-privatekey"),
            known_hosts=data.get("known_hosts"),
        )

    def _cached(
        self, api_version: str, kind: str, namespace: str | None, labels: dict[str, str]
    ) -> list[Manifest] | None:
        """The operator watches every ModelDeployment of the namespaces it serves: a sync
        reads them from its cache, not from a list of a thousand (most of an idle sync)."""
        if (api_version, kind) != (c.API_VERSION, c.MODELDEPLOYMENT_KIND):
            return None
        if namespace is None or not self.watches(namespace):
            return None

        found: list[Manifest] = self.cache.select(
            kind, lambda _: True, labels=labels, namespace=namespace
        )
        return found

    def _applying_as(self, ms: Manifest) -> Kube:
        """Who dry-runs, applies and deletes the ModelSync's content: its own
        serviceAccountName, else the platform's default account, both in its namespace;
        the operator itself only where the platform says so. Never a fallback."""
        namespace = ms["metadata"]["namespace"]
        named = ms["spec"].get("serviceAccountName")
        account = named or self.settings.default_service_account
        if not account:
            if self.settings.apply_as_operator:
                return self.kube
            raise NoAccountError(
                "no spec.serviceAccountName, and the platform names no default account "
                "(--default-service-account): nothing is applied; set spec.serviceAccountName "
                "to a ServiceAccount of this namespace"
            )
        if self.kube.get("v1", "ServiceAccount", namespace, account) is None:
            source = "spec.serviceAccountName" if named else "the platform's default account"
            raise NoAccountError(
                f"ServiceAccount {namespace}/{account} ({source}) does not exist: nothing is "
                "applied; create it and bind it to what the repository may create"
            )
        return self.kube.impersonate(namespace, account)

    def _render_settings(self) -> rendering.RenderSettings:
        """The operator's render settings; each render's private copy of the revision is
        written in the git cache, under its disk budget."""
        return dataclasses.replace(
            self.settings.render,
            scratch=lambda size: self.fetcher.scratch(size, "a render's copy of the revision"),
        )

    # ------------------------------------------------------------------ record

    def _record(self, ms: Manifest, outcome: Outcome, started: datetime.datetime) -> None:
        recorded = record(ms, outcome, started, self.clock(), self._health_for(ms))
        if recorded.event is not None:
            meta = ms["metadata"]
            event = recorded.event
            self.kube.event(
                ms,
                c.MODELSYNC_KIND,
                event.reason,
                event.message,
                action="Sync",
                warning=event.warning,
            )
            (log.warning if event.warning else log.info)(
                "sync %s/%s %s: %s",
                meta["namespace"],
                meta["name"],
                outcome.reason,
                event.message,
                extra=logs.about(
                    c.MODELSYNC_KIND, meta["namespace"], meta["name"], outcome.revision
                ),
            )
        self._write_status(ms, recorded.status)
        if self.statuses is not None:
            self.statuses.observe(ms, recorded.status)
        if self.notifier is not None:
            self.notifier.observe_sync(ms, ms.get("status") or {}, recorded.status)

    def _record_suspended(self, ms: Manifest) -> None:
        status = dict(ms.get("status") or {})
        generation = int(ms["metadata"].get("generation") or 0)
        status["observedGeneration"] = generation
        ready = conditions.find(status.get("conditions"), c.READY) or {}
        status["conditions"] = conditions.merge(
            conditions.without(status.get("conditions"), [c.RECONCILING, c.STALLED]),
            [
                Observed(
                    c.READY,
                    ready.get("status") == "True",
                    c.REASON_SUSPENDED,
                    "suspended: no fetch, apply or prune until spec.suspend is false; "
                    f"last applied {status.get('lastAppliedRevision') or 'nothing'}",
                )
            ],
            generation,
            self.clock(),
        )
        self._write_status(ms, status)

    def _write_status(self, ms: Manifest, status: Manifest) -> None:
        current = ms.get("status") or {}
        # None removes a field; removing one that is not there is no change.
        status = {k: v for k, v in status.items() if v is not None or k in current}
        if status == current:
            return
        meta = ms["metadata"]
        try:
            patched = self.kube.patch_status(
                c.API_VERSION,
                c.MODELSYNC_KIND,
                meta["namespace"],
                meta["name"],
                status,
                ms.get("status") or {},
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return
            if forbidden_here(error, meta["namespace"]):
                return  # said in the log: a namespace the operator only reads
            raise
        self.cache.put(c.MODELSYNC_KIND, patched)


_ACTIONS = ("created", "configured", "unchanged", "deleted")  # ChangeSet's first fields


def _ready_condition(
    revision: str, health: modelhealth.ModelsHealth, last: dict[str, Any] | None = None
) -> Observed:
    """Ready of an applied revision, by its models' health; once they are Ready, the
    message is the one a sync that found them Ready would have written (from `last`, the
    history entry of the sync that applied the revision)."""
    if health.healthy:
        message = f"applied revision {revision}; {health.message()}"
        if last and last.get("revision") == revision:
            counts = ChangeSet(*([""] * int(last.get(a) or 0) for a in _ACTIONS))
            message = f"applied revision {revision}: {counts.summary()}"
        return Observed(c.READY, True, c.REASON_SUCCEEDED, message)
    return Observed(
        c.READY,
        False,
        c.REASON_MODELS_NOT_READY,
        f"applied {revision}; {len(health.not_ready)} of {health.total} models not Ready "
        "(see Healthy)",
    )


def _errors_headline(errors: list[RevisionError]) -> str:
    """How many errors, and the first, cut (status.errors has every one whole; the
    revision is lastAttemptedRevision)."""
    first = min(errors, key=lambda error: (error.source.file, error.source.line))
    count = f"{len(errors)} errors" if len(errors) > 1 else "1 error"
    return cut(f"rejected, nothing applied ({count} in status.errors): {first}")


def _content_failure(errors: list[RevisionError]) -> tuple[str, bool]:
    """The reason and whether it is stalled: refusals by RBAC alone are retried with
    backoff (a RoleBinding mends them, not a commit); anything else waits for git."""
    if all(error.forbidden for error in errors):
        return c.REASON_FORBIDDEN, False
    return c.REASON_VALIDATION_FAILED, True


def _describe_errors(revision: Revision, errors: list[RevisionError]) -> str:
    errors.sort(key=lambda error: (error.source.file, error.source.line))  # as validate lists them
    shown = "; ".join(str(error) for error in errors[:MAX_ERRORS_SHOWN])
    more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
    return (
        f"revision {revision.name} rejected, nothing applied; the last applied revision "
        f"keeps running: {shown}{more}"
    )


def remote_models(kube: Kube, inventory: list[dict[str, str]]) -> dict[tuple[str, str], Manifest]:
    """The inventory's ModelDeployments as a remote cluster holds them: one list per
    namespace (the kubeconfig's user may have rights in those namespaces only)."""
    ours = owned_models(inventory)
    found: dict[tuple[str, str], Manifest] = {}
    for namespace in sorted({ns for ns, _ in ours}):
        for md in kube.list_objects(c.API_VERSION, c.MODELDEPLOYMENT_KIND, "", namespace):
            key = (md["metadata"].get("namespace", ""), md["metadata"]["name"])
            if key in ours:
                found[key] = md
    return found


def owned_models(inventory: list[dict[str, str]]) -> set[tuple[str, str]]:
    """(namespace, name) of every ModelDeployment in an inventory."""
    return {
        (entry.get("namespace", ""), entry["name"])
        for entry in inventory
        if entry["kind"] == c.MODELDEPLOYMENT_KIND and entry["apiVersion"] == c.API_VERSION
    }


def _merge_inventory(
    previous: list[dict[str, str]], current: list[dict[str, str]]
) -> list[dict[str, str]]:
    """After a partial apply, keep track of both what was and what may now be applied."""
    seen = {prunemod.key(e): e for e in previous}
    seen.update({prunemod.key(e): e for e in current})
    return [seen[k] for k in sorted(seen)]


def fetch_cache_dir(base: str | None) -> Path:
    import tempfile

    return Path(base) if base else Path(tempfile.gettempdir()) / "modelsync-git"
