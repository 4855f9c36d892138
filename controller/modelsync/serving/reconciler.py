"""Serve: make one ModelDeployment's serving objects what its spec says, and report.

`ServingReconciler.reconcile` runs in a worker thread for one ModelDeployment
at a time. It reads only the watch cache; it writes (server-side apply, a
status patch, an Event) only when something differs, so a resync with nothing
to do makes no API request. A rollout going as planned is written once, when it
ends (Ready, with its history entry), unless it takes longer than
`quiet_seconds`; success posts no Event (the history says it). Out-of-band
changes to the objects it owns are applied back, with an Event and a log line
naming the object and the fields.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

import kubernetes

from modelsync.api import conditions, modeldeployment
from modelsync.api import constants as c
from modelsync.api.conditions import Observed
from modelsync.api.manifest import integer, mapping
from modelsync.api.modeldeployment import CanaryStep
from modelsync.kube import drift
from modelsync.kube.client import Kube, api_message, forbidden_here, transient
from modelsync.serving import canary, gate, health, rollout
from modelsync.serving.analysis import Analyses
from modelsync.serving.gate import Gate
from modelsync.serving.render import DEFAULT_IMAGES, Images, InvalidSpecError, Rendered, render
from modelsync.serving.validation import Result, Verdict
from modelsync.telemetry import logs, metrics

log = logging.getLogger(__name__)

Manifest = dict[str, Any]
Clock = Callable[[], datetime.datetime]

# A reconcile failure's message in the Ready condition, at most (the API server's words
# about an object can run to kilobytes).
MAX_FAILURE_MESSAGE = 512
# The inference gate's condition on a pod: every failed sample, within reason.
MAX_GATE_MESSAGE = 4096

# The serving objects, and the API version of each.
OWNED_KINDS: dict[str, str] = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _namespace_terminating(error: kubernetes.client.ApiException) -> bool:
    """Writing into a namespace that is being deleted fails; its objects go anyway."""
    return error.status == 403 and "NamespaceTerminating" in str(error.body or "")


def current_revision(md: Manifest, spec_hash: str) -> str:
    """The git revision the ModelDeployment came from, else its spec hash."""
    annotations = md["metadata"].get("annotations") or {}
    return str(annotations.get(c.ANNOTATION_REVISION) or f"spec:{spec_hash}")


def stable_model(md: Manifest) -> Manifest:
    """The ModelDeployment as it was when it last served healthily (from its status)."""
    status = md.get("status") or {}
    meta = dict(md["metadata"])
    annotations = dict(meta.get("annotations") or {})
    stable_revision = str(status.get("stableRevision") or "")
    if stable_revision and not stable_revision.startswith("spec:"):
        annotations[c.ANNOTATION_REVISION] = stable_revision
    else:
        annotations.pop(c.ANNOTATION_REVISION, None)
    meta["annotations"] = annotations
    spec = dict(status["stableSpec"])
    # The quarantine is keyed on the pod template: git's replica count is not part of
    # what failed, and a change of it alone is applied to the version that serves.
    if "replicas" in md["spec"]:
        spec["replicas"] = md["spec"]["replicas"]
    return {**md, "metadata": meta, "spec": spec}


def in_canary(md: Manifest, wanted: Rendered) -> bool:
    """A Canary rollout of a new revision is under way (not yet past its last step)."""
    spec, status = md["spec"], md.get("status") or {}
    if (spec.get("rollout") or {}).get("strategy") != "Canary" or not status.get("stableSpec"):
        return False
    if wanted.spec_hash == status.get("stableSpecHash"):
        return False
    state = status.get("canary") or {}
    steps = (spec.get("rollout") or {}).get("steps") or []
    return not (
        state.get("specHash") == wanted.spec_hash and int(state.get("step", 0)) >= len(steps)
    )


def converged(md: Manifest, rendered: Rendered) -> bool:
    """True when this generation and revision were applied before: a difference found
    now was made by someone else."""
    status = md.get("status") or {}
    return (
        status.get("observedGeneration") == md["metadata"].get("generation")
        and status.get("specHash") == rendered.spec_hash
        and status.get("currentRevision") == current_revision(md, rendered.spec_hash)
    )


class ServingReconciler:
    def __init__(
        self,
        kube: Kube,
        cache: Any,
        analyses: Analyses,
        clock: Clock = _utcnow,
        *,
        locked_down: bool = True,
        images: Images = DEFAULT_IMAGES,
        gate: Gate | None = None,
        quiet_seconds: float = 0.0,
    ) -> None:
        self.kube = kube
        self.cache = cache
        self.analyses = analyses
        self.clock = clock
        self.locked_down = locked_down  # the platform's model_pod_security
        self.images = images  # the platform's runtime images and pull policy
        self.gate = gate  # sends spec.validation's samples to new pods (None: no gate)
        self.quiet_seconds = quiet_seconds  # the platform's quiet_rollout_seconds
        # Models whose routine rollout status waits: since when, for which spec.
        self._quiet: dict[tuple[str, str], tuple[str, datetime.datetime]] = {}
        # What each model's objects last held of what we wanted, as this process saw or
        # wrote it (drift.fingerprint), by model and (kind, name): a difference from it
        # that we did not ask for is drift; what we want changing (a new spec, a
        # canary's next size) is not.
        self._held: dict[tuple[str, str], dict[tuple[str, str], str]] = {}

    def _render(self, md: Manifest) -> Rendered:
        return render(md, locked_down=self.locked_down, images=self.images)

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Reconcile one ModelDeployment; returns seconds until it wants another look
        (a canary step's pause or analysis interval), or None."""
        md = self.cache.get(c.MODELDEPLOYMENT_KIND, namespace, name)
        if md is None or md["metadata"].get("deletionTimestamp"):
            self._quiet.pop((namespace, name), None)
            self._held.pop((namespace, name), None)
            return None  # the garbage collector removes what it owned
        with metrics.RECONCILE_SECONDS.time():
            try:
                return self._reconcile(md)
            except kubernetes.client.ApiException as error:
                if _namespace_terminating(error):
                    log.debug("%s/%s: namespace is being deleted", namespace, name)
                    return None
                if error.status == 404 and self._deleted(namespace, name):
                    return None  # deleted while this reconcile ran: nothing to report
                if forbidden_here(error, namespace):
                    # A namespace the operator only reads: neither serving nor status is
                    # possible there, so trying again before a change or a resync is noise.
                    return None
                if not transient(error):  # about the object: the user can act on it
                    self._report_failure(md, c.REASON_APPLY_FAILED, api_message(error))
                raise  # the work queue tries again, with backoff
            except Exception as error:
                # A fault of ours: said in status (the type and first line, never a
                # traceback's locals or a request's headers), tried again with backoff.
                first = str(error).splitlines()[0] if str(error) else ""
                self._report_failure(
                    md, c.REASON_INTERNAL_ERROR, f"{type(error).__name__}: {first}"
                )
                raise
            finally:
                if self._deleted(namespace, name):
                    # Deleted while this reconcile ran: the gauges it set after the
                    # deletion's own cleanup (operator.py) go too.
                    metrics.model_gone(namespace, name)

    def _deleted(self, namespace: str, name: str) -> bool:
        """Gone from the cache: the watch saw the ModelDeployment deleted."""
        return not self.cache.has(c.MODELDEPLOYMENT_KIND, namespace, name)

    def _reconcile(self, md: Manifest) -> float | None:
        try:
            wanted = self._render(md)
        except InvalidSpecError as error:
            self._report_invalid(md, error)
            metrics.RECONCILES.labels(result="invalid").inc()
            return None
        status = md.get("status") or {}
        # New pods waiting on the inference gate: validated first, so that the decisions
        # below see a pod that failed its samples.
        gate_wait = self._validate_pods(md, wanted)
        # A revision that failed stays quarantined until git changes the model: the
        # last healthy spec keeps serving, on every resync, with no flapping.
        if status.get("failedRevision") == wanted.spec_hash and status.get("stableSpec"):
            stable_md = stable_model(md)
            stable = self._render(stable_md)
            changed = self._apply(stable_md, stable)
            self._report(md, stable_md, stable, {}, [])
            metrics.RECONCILES.labels(result="applied" if changed else "unchanged").inc()
            return gate_wait
        if in_canary(md, wanted):
            return _sooner(self._canary(md, wanted), gate_wait)
        wait: float | None = None
        watch = status.get("postPromotion")
        if watch and watch.get("specHash") == wanted.spec_hash:
            rolled_back, wait = self._watch_promotion(md, wanted, watch)
            if rolled_back:
                return None
            meta = md["metadata"]
            md = self.cache.get(c.MODELDEPLOYMENT_KIND, meta["namespace"], meta["name"]) or md
        changed = self._apply(md, wanted)
        changed = self._remove_canary(md) or changed
        if self._judge(md, wanted):
            return None
        metrics.RECONCILES.labels(result="applied" if changed else "unchanged").inc()
        watched = wait if wait is not None else self._watch_started(md, wanted)
        return _sooner(_sooner(watched, gate_wait), self._quiet_left(md))

    def _apply(self, md: Manifest, rendered: Rendered) -> bool:
        """Converge every serving object of `rendered`; True when something was written.
        No Event: a version applied is routine; its outcome (rolled out, failed, rolled
        back) is what status.history records and, when it failed, an Event says."""
        changed = [self._converge(md, obj, rendered) for obj in rendered.objects]
        if rendered.autoscaler is None:
            changed.append(self._remove_autoscaler(md))
        return any(changed)

    def _judge(self, md: Manifest, wanted: Rendered) -> bool:
        """Decide about the wanted revision: promote it, roll it back, or record its failure.
        Writes status. True when it rolled back (and so reported already)."""
        meta, spec = md["metadata"], md["spec"]
        status = md.get("status") or {}
        rollback = modeldeployment.parse_spec(spec).rollback
        deployment = self.cache.get("Deployment", meta["namespace"], meta["name"])
        pods = self.cache.owned("Pod", meta["namespace"], meta["name"])
        waiting = self._gate_wait(md, pods, wanted.spec_hash)
        failure = rollout.detect_failure(
            deployment, pods, wanted.spec_hash, rollback.max_restarts, gate=waiting
        )
        decision = rollout.decide(
            wanted_hash=wanted.spec_hash,
            stable_hash=status.get("stableSpecHash"),
            has_stable_spec=bool(status.get("stableSpec")),
            ready=health.assess(deployment).ready,
            failure=failure,
            automatic=rollback.automatic,
        )
        limit = rollback.history_limit
        revision = current_revision(md, wanted.spec_hash)
        extra: Manifest = {}
        observed: list[Observed] = []
        if waiting is not None and waiting.waiting and decision.action is rollout.Action.WAIT:
            message = rollout.slot_message(waiting)
            observed.append(Observed(c.PROGRESSING, True, c.REASON_WAITING_FOR_SLOT, message))
        if decision.action is rollout.Action.PROMOTE:
            metrics.ROLLOUTS.labels(meta["namespace"], meta["name"], "succeeded").inc()
            extra = {
                "stableSpec": spec,
                "stableSpecHash": wanted.spec_hash,
                "stableRevision": revision,
                "canary": None,
                "postPromotion": self._watch_start(md, wanted),
                "history": rollout.remember(
                    status.get("history"),
                    self._entry(md, wanted, revision, c.HISTORY_SUCCEEDED, "rolled out"),
                    limit,
                ),
            }
        elif decision.action is rollout.Action.FAIL and decision.failure is not None:
            entry = self._entry(md, wanted, revision, c.HISTORY_FAILED, decision.failure.message)
            extra = {"history": rollout.remember(status.get("history"), entry, limit)}
            if extra["history"] != (status.get("history") or []):
                metrics.ROLLOUTS.labels(meta["namespace"], meta["name"], "failed").inc()
                self.kube.event(
                    md,
                    c.MODELDEPLOYMENT_KIND,
                    c.EVENT_ROLLOUT_FAILED,
                    f"version {spec['model']['version']} ({revision}) failed: "
                    f"{decision.failure.message}; no rollback "
                    + (
                        "(rollback.automatic is off)"
                        if status.get("stableSpec")
                        else "(no earlier healthy version)"
                    ),
                    action="Rollout",
                    warning=True,
                )
        elif decision.action is rollout.Action.ROLL_BACK and decision.failure is not None:
            self._roll_back(md, wanted, revision, decision.failure, limit)
            return True
        healthy = decision.action is rollout.Action.PROMOTE or (
            decision.action is rollout.Action.WAIT
            and wanted.spec_hash == status.get("stableSpecHash")
        )
        if healthy and status.get("failedRevision"):
            # Git changed the model since (a fix, or a revert to the stable version): the
            # quarantine is over; should git bring the failed spec back, it is tried anew.
            extra.update({"failedRevision": None, "failedGitRevision": None})
        if healthy and conditions.is_true(status.get("conditions"), c.ROLLED_BACK):
            # Git changed the model (a fix, or a revert to the stable version): over.
            observed.append(
                Observed(
                    c.ROLLED_BACK,
                    False,
                    c.REASON_SUPERSEDED,
                    f"git now wants version {spec['model']['version']} ({revision}), which serves; "
                    "the earlier rollback is over",
                )
            )
        # Reported from the same Deployment the decision saw: one read later it may be
        # Ready while this decision (from before) has not promoted yet.
        routine = decision.action is rollout.Action.WAIT and not extra and not observed
        self._report(md, md, wanted, extra, observed, deployment, routine=routine)
        return False

    def _roll_back(
        self,
        md: Manifest,
        wanted: Rendered,
        revision: str,
        failure: rollout.Failure,
        limit: int,
        restore: Manifest | None = None,
    ) -> None:
        """Back to the stable spec in status, or to `restore` (stableSpec, stableSpecHash,
        stableRevision: the one before a promotion that its watch found failing)."""
        status = {**(md.get("status") or {}), **(restore or {})}
        stable_md = stable_model({**md, "status": status})
        stable = self._render(stable_md)
        self._apply(stable_md, stable)
        version = md["spec"]["model"]["version"]
        stable_version = stable_md["spec"]["model"]["version"]
        message = (
            f"version {version} ({revision}) failed: {failure.message}; rolled back to "
            f"version {stable_version} ({status.get('stableRevision')}). It stays out until "
            "git changes this model again"
        )
        meta = md["metadata"]
        log.warning(
            "rolled back %s/%s: %s",
            meta["namespace"],
            meta["name"],
            message,
            extra=logs.about(c.MODELDEPLOYMENT_KIND, meta["namespace"], meta["name"], revision),
        )
        metrics.ROLLOUTS.labels(meta["namespace"], meta["name"], "failed").inc()
        metrics.ROLLBACKS.labels(meta["namespace"], meta["name"], failure.reason).inc()
        entry = self._entry(md, wanted, revision, c.HISTORY_ROLLED_BACK, failure.message)
        extra = {
            **(restore or {}),
            "failedRevision": wanted.spec_hash,
            "failedGitRevision": revision,
            "canary": None,
            "history": rollout.remember(status.get("history"), entry, limit),
        }
        self._report(
            md, stable_md, stable, extra, [Observed(c.ROLLED_BACK, True, failure.reason, message)]
        )
        # Status first: an operator killed between the two has recorded the rollback,
        # so its successor neither rolls back again nor posts a second Event.
        self.kube.event(
            md,
            c.MODELDEPLOYMENT_KIND,
            c.EVENT_ROLLED_BACK,
            message,
            action="Rollback",
            warning=True,
        )
        metrics.RECONCILES.labels(result="rolled-back").inc()

    def _entry(
        self, md: Manifest, rendered: Rendered, revision: str, result: str, message: str
    ) -> Manifest:
        return {
            "revision": revision,
            "modelVersion": md["spec"]["model"]["version"],
            "specHash": rendered.spec_hash,
            "time": conditions.timestamp(self.clock()),
            "result": result,
            "message": message[:1024],
        }

    # ------------------------------------------------------------------ after promotion

    def _watch_start(self, md: Manifest, wanted: Rendered) -> Manifest | None:
        """The watch a promotion starts (spec.rollout.analysis.postPromotionSeconds), or
        None: no such analysis, or no earlier stable version to go back to."""
        status = md.get("status") or {}
        analysis = modeldeployment.parse_spec(md["spec"]).rollout.analysis
        if analysis is None or analysis.post_promotion_seconds <= 0:
            return None
        if not status.get("stableSpec"):
            return None
        return canary.watch_start(wanted.spec_hash, status, self.clock())

    def _watch_started(self, md: Manifest, wanted: Rendered) -> float | None:
        """A promotion just started its watch: when to make its first check."""
        meta = md["metadata"]
        now = self.cache.get(c.MODELDEPLOYMENT_KIND, meta["namespace"], meta["name"]) or md
        watch = (now.get("status") or {}).get("postPromotion") or {}
        analysis = modeldeployment.parse_spec(md["spec"]).rollout.analysis
        if watch.get("specHash") != wanted.spec_hash or analysis is None:
            return None
        return float(analysis.interval_seconds)

    def _watch_promotion(
        self, md: Manifest, wanted: Rendered, watch: Manifest
    ) -> tuple[bool, float | None]:
        """One look at the watch after a promotion: query when a check is due, end the
        watch when its window is over, roll back to the spec before the promotion when
        the analysis fails. Returns (rolled back, when to look again)."""
        spec = md["spec"]
        typed = modeldeployment.parse_spec(spec)
        analysis, now = typed.rollout.analysis, self.clock()
        if analysis is None or analysis.post_promotion_seconds <= 0:
            look = canary.WatchLook(None, None)  # taken out of the spec: the watch ends
        else:
            due = canary.watch_due(watch, analysis, now)
            attempt = ("post", wanted.spec_hash, int(watch.get("checks") or 0))
            raw = (spec.get("rollout") or {})["analysis"]
            verdict = self._query(md, raw, attempt) if due else None
            look = canary.watch_look(watch, analysis, now, verdict, self.analyses.deadline)
        if look.failed is not None:
            restore = {
                "stableSpec": watch.get("previousSpec"),
                "stableSpecHash": watch.get("previousSpecHash"),
                "stableRevision": watch.get("previousRevision"),
                "postPromotion": None,
            }
            failure = rollout.Failure(c.REASON_POST_PROMOTION_ANALYSIS_FAILED, look.failed)
            revision = current_revision(md, wanted.spec_hash)
            self._roll_back(md, wanted, revision, failure, typed.rollback.history_limit, restore)
            return True, None
        if look.state != watch:
            self._write_status(md, {**(md.get("status") or {}), "postPromotion": look.state})
        return False, look.wait

    # ------------------------------------------------------------------ canary

    def _canary(self, md: Manifest, wanted: Rendered) -> float | None:
        """One look at a canary: size both tracks for the step's weight, then judge the
        step (pods ready, pause over, analysis) and advance, hold, or roll back."""
        meta, spec = md["metadata"], md["spec"]
        status = md.get("status") or {}
        rollout_spec, typed = spec.get("rollout") or {}, modeldeployment.parse_spec(spec)
        steps = typed.rollout.steps or (CanaryStep(weight=100),)
        now = self.clock()
        state: Manifest = canary.state_for(status.get("canary"), wanted.spec_hash, steps, now)
        stable_md = stable_model(md)
        stable = self._render(stable_md)
        sizes = self._size_tracks(md, typed, int(state["weight"]), stable, wanted)
        name = meta["name"] + canary.CANARY_SUFFIX
        live = self.cache.get("Deployment", meta["namespace"], name)
        pods = self.cache.owned("Pod", meta["namespace"], meta["name"])
        revision = current_revision(md, wanted.spec_hash)
        limit = typed.rollback.history_limit
        failure = rollout.detect_failure(
            live,
            pods,
            wanted.spec_hash,
            typed.rollback.max_restarts,
            gate=self._gate_wait(md, pods, wanted.spec_hash),
        )
        if failure is not None:
            self._end_canary(md)
            self._roll_back(md, wanted, revision, failure, limit)
            return None
        available = int(((live or {}).get("status") or {}).get("availableReplicas") or 0)
        due = canary.analysis_due(state, steps, now, sizes.sized)
        look = canary.advance(
            state,
            steps,
            typed.rollout.analysis,
            now,
            sizes.sized,
            self._analyse(md, state, rollout_spec) if due else None,
            self.analyses.deadline,
        )
        state, wait = look.state, look.wait
        if look.failed is not None:
            self._end_canary(md)
            failure = rollout.Failure(c.REASON_ANALYSIS_FAILED, look.failed)
            self._roll_back(md, wanted, revision, failure, limit)
            return None
        message = (
            f"canary of version {spec['model']['version']} ({revision}): step "
            f"{min(integer(state, 'step') + 1, len(steps))} of {len(steps)}, weight "
            f"{state['weight']}%, {available} of {sizes.canary} canary replicas "
            "available" + (f"; {state['lastAnalysis']}" if state["lastAnalysis"] else "")
        )
        self._report(
            md,
            stable_md,
            stable,
            {"canary": state},
            [
                Observed(c.PROGRESSING, True, c.REASON_CANARY, message),
                Observed(c.READY, False, c.REASON_CANARY, message),
            ],
        )
        return wait

    def _size_tracks(
        self,
        md: Manifest,
        typed: modeldeployment.ModelDeploymentSpec,
        weight: int,
        stable: Rendered,
        wanted: Rendered,
    ) -> canary.Sizes:
        """Size both tracks for `weight` without giving up capacity (canary.size): the
        canary grows first, the stable Deployment shrinks by what the canary serves. An
        autoscaled model's stable replicas are never written (the autoscaler owns them)."""
        meta = md["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        live_stable = self.cache.get("Deployment", namespace, name) or {}
        live_canary = self.cache.get("Deployment", namespace, name + canary.CANARY_SUFFIX) or {}
        autoscaling = typed.autoscaling
        if autoscaling is not None:
            total = int((live_stable.get("spec") or {}).get("replicas") or 0)
            total = max(total, autoscaling.min_replicas)
        else:
            total = 1 if typed.replicas is None else typed.replicas
        cap = canary.capacity(
            total,
            typed.rollout.max_surge,
            typed.rollout.max_unavailable,
            autoscaling.min_replicas if autoscaling else None,
            autoscaling.max_replicas if autoscaling else 0,
        )
        sizes = canary.size(cap, weight, tracks_of(live_canary, live_stable))
        stable_deployment = dict(stable.deployment)
        if sizes.stable is not None:
            stable_deployment["spec"] = {
                **mapping(stable.deployment, "spec"),
                "replicas": sizes.stable,
            }
        track = canary.canary_deployment(wanted.deployment, sizes.canary)
        stable_md = stable_model(md)
        self._converge(stable_md, stable.service, stable)
        for obj in (stable_deployment, track):
            self._converge(stable_md, obj, stable, sizing=True)
        return sizes

    def _analyse(
        self, md: Manifest, state: Manifest, rollout_spec: Manifest
    ) -> canary.Verdict | None:
        """The analysis verdict on this step, or None while its query runs."""
        analysis = rollout_spec.get("analysis")
        if not analysis:
            return canary.Verdict(canary.Result.PASS, "")
        attempt = (state["specHash"], int(state["step"]), int(state["failures"]))
        return self._query(md, analysis, attempt)

    def _query(
        self, md: Manifest, analysis: Manifest, attempt: tuple[Any, ...]
    ) -> canary.Verdict | None:
        """The verdict of `attempt` of the analysis, or None while its queries run. The
        headers Secret is read once per attempt, when its queries start."""
        meta = md["metadata"]
        key = (c.MODELDEPLOYMENT_KIND, meta["namespace"], meta["name"])
        if self.analyses.started(key, attempt):
            return self.analyses.verdict(key, attempt, analysis)
        try:
            headers = self._analysis_headers(meta["namespace"], analysis)
        except ValueError as error:
            queries = canary.queries_of(analysis)
            return canary.combine([canary.unanswered(query, str(error)) for query in queries])
        return self.analyses.verdict(key, attempt, analysis, headers)

    def _analysis_headers(self, namespace: str, analysis: Manifest) -> dict[str, str]:
        name = str((analysis.get("headersSecretRef") or {}).get("name") or "")
        if not name:
            return {}
        try:
            secret = self.kube.get("v1", "Secret", namespace, name)
        except kubernetes.client.ApiException as error:  # 403: tenant access not enabled
            raise ValueError(
                f"Secret {namespace}/{name} (spec.rollout.analysis.headersSecretRef) could "
                f"not be read: HTTP {error.status}"
            ) from None
        return canary.analysis_headers(secret, namespace, name)

    def _end_canary(self, md: Manifest) -> None:
        meta = md["metadata"]
        name = meta["name"] + canary.CANARY_SUFFIX
        self.kube.delete("apps/v1", "Deployment", meta["namespace"], name)
        self.cache.delete("Deployment", meta["namespace"], name)
        self._remember(md, "Deployment", name, None)

    def _remove_canary(self, md: Manifest) -> bool:
        """No canary under way: a canary Deployment left over goes (after a promotion) -
        once the stable Deployment has rolled out and is available, so that the canary's
        pods serve until the promoted ones do."""
        meta = md["metadata"]
        name = meta["name"] + canary.CANARY_SUFFIX
        if self.cache.get("Deployment", meta["namespace"], name) is None:
            return False
        stable = self.cache.get("Deployment", meta["namespace"], meta["name"])
        if not health.assess(stable).ready:
            return False
        self._end_canary(md)
        return True

    # ------------------------------------------------------------------ inference gate

    def _validate_pods(self, md: Manifest, wanted: Rendered) -> float | None:
        """Send spec.validation's samples to each pod that waits on the gate (its model
        loaded, not yet validated) and set the gate's condition from the verdict.
        Returns seconds until an unreachable pod is tried again, or None."""
        status = md.get("status") or {}
        if self.gate is None or not (
            md["spec"].get("validation") or (status.get("stableSpec") or {}).get("validation")
        ):
            return None
        meta = md["metadata"]
        specs: dict[str, tuple[Manifest, Rendered]] | None = None
        wait = None
        for pod in self.cache.owned("Pod", meta["namespace"], meta["name"]):
            if not validation_due(pod):
                continue
            if specs is None:  # the stable spec is rendered only when a pod needs it
                specs = self._gated_specs(md, wanted)
            spec_hash = (pod["metadata"].get("labels") or {}).get(c.LABEL_SPEC_HASH, "")
            spec, rendered = specs.get(spec_hash, ({}, wanted))
            typed = modeldeployment.parse_spec(spec).validation if spec else None
            if typed is None:
                continue  # a pod of a spec this model no longer knows: its own gate stays
            found = pod.get("status") or {}
            refused = gate.address_refusal(str(found.get("podIP")), str(found.get("hostIP")))
            port = rendered.port
            verdict = (
                Verdict(Result.UNREACHABLE, refused)
                if refused
                else self.gate.verdict(
                    (c.MODELDEPLOYMENT_KIND, meta["namespace"], meta["name"]),
                    (meta["namespace"], pod["metadata"]["name"]),
                    (spec_hash, pod["metadata"].get("uid")),
                    (str(found["podIP"]), port),
                    typed,
                )
            )
            if verdict is not None:
                self._set_gate(pod, verdict)
            if verdict is None or verdict.result is Result.UNREACHABLE:
                wait = gate.RETRY_SECONDS
        return wait

    def _gate_wait(
        self, md: Manifest, pods: list[Manifest], spec_hash: str
    ) -> rollout.GateWait | None:
        """Where the new pods of `spec_hash` stand at the gate: in line for a slot, or
        since when the last of them got one; None when none of them asked it."""
        if self.gate is None:
            return None
        namespace = md["metadata"]["namespace"]
        places: list[int] = []
        granted: list[float] = []
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            if labels.get(c.LABEL_SPEC_HASH) != spec_hash or not validation_due(pod):
                continue
            key = (namespace, pod["metadata"]["name"])
            place = self.gate.ahead(key)
            since = self.gate.since_granted(key) if place is None else None
            if place is not None:
                places.append(place)
            elif since is not None:
                granted.append(since)
        if not places and not granted:
            return None
        return rollout.GateWait(len(places), min(places, default=0), min(granted, default=None))

    def _gated_specs(self, md: Manifest, wanted: Rendered) -> dict[str, tuple[Manifest, Rendered]]:
        """Spec hash -> (spec, rendered) of the specs whose pods may wait on the gate:
        the wanted one, and the stable one (its pods after a rollback or a restart)."""
        specs = {wanted.spec_hash: (md["spec"], wanted)}
        if (md.get("status") or {}).get("stableSpec"):
            stable_md = stable_model(md)
            stable = self._render(stable_md)
            specs.setdefault(stable.spec_hash, (stable_md["spec"], stable))
        return specs

    def _set_gate(self, pod: Manifest, verdict: Verdict) -> None:
        """The gate's condition on the pod, written only when it says something new."""
        reason = {
            Result.PASSED: c.REASON_SAMPLES_PASSED,
            Result.FAILED: c.REASON_SAMPLES_FAILED,
            Result.UNREACHABLE: c.REASON_POD_UNREACHABLE,
        }[verdict.result]
        message = verdict.message[:MAX_GATE_MESSAGE]
        meta = pod["metadata"]
        current = conditions.find(
            (pod.get("status") or {}).get("conditions"), c.CONDITION_VALIDATED
        )
        if current and (current.get("reason"), current.get("message")) == (reason, message):
            return
        condition = {
            "type": c.CONDITION_VALIDATED,
            "status": "True" if verdict.result is Result.PASSED else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": conditions.timestamp(self.clock()),
        }
        try:
            patched = self.kube.patch_pod_condition(
                meta["namespace"], meta["name"], str(meta.get("uid")), condition
            )
        except kubernetes.client.ApiException as error:
            if error.status in (404, 409):
                return  # the pod is gone (or another of its name is there): nothing to gate
            raise
        self.cache.put("Pod", patched)

    # ------------------------------------------------------------------ objects

    def _converge(
        self, md: Manifest, desired: Manifest, rendered: Rendered, *, sizing: bool = False
    ) -> bool:
        """Apply `desired` if the live object lacks any of it. True when it wrote.
        What we write because we want something else now (a new spec, a canary's next
        size) is ours; a difference from what the object held, wanting the same, is
        someone else's and reported as drift. `sizing`: a canary sizing its tracks,
        whose replicas change from look to look by design - not drift while this
        process does not know what the object held (after a restart)."""
        kind = desired["kind"]
        meta = desired["metadata"]
        held = self._held.get((md["metadata"]["namespace"], md["metadata"]["name"]), {})
        last = held.get((kind, meta["name"]))
        wanted = drift.fingerprint(desired)
        settled = converged(md, rendered) and not sizing
        live = self.cache.get(kind, meta["namespace"], meta["name"])
        if live is None and (settled or last is not None):
            # Missing from the cache may mean not listed yet: ask before calling it deleted.
            # (A model never applied has nothing to ask about: the apply creates it.)
            live = self.kube.get(desired["apiVersion"], kind, meta["namespace"], meta["name"])
            if live is not None:
                self.cache.put(kind, live)
        drifted = self.kube.changes(desired, live)
        if not drifted:
            self._remember(md, kind, meta["name"], wanted)
            return False
        applied = self.kube.apply(desired)
        self.cache.put(kind, applied)
        self._remember(md, kind, meta["name"], wanted)  # written (a refused apply raised)
        if drift.out_of_band(last, wanted, settled=settled):
            what = "deleted" if live is None else "changed " + ", ".join(drifted)
            note = f"{kind} {meta['name']}: {what} out of band; reverted to the spec"
            log.warning(
                "drift reverted: %s/%s %s",
                meta["namespace"],
                meta["name"],
                note,
                extra=logs.about(
                    c.MODELDEPLOYMENT_KIND,
                    meta["namespace"],
                    meta["name"],
                    current_revision(md, rendered.spec_hash),
                ),
            )
            metrics.DRIFT_REVERTED.labels(
                md["metadata"]["namespace"], md["metadata"]["name"], kind
            ).inc()
            self.kube.event(
                md,
                c.MODELDEPLOYMENT_KIND,
                c.EVENT_DRIFT_REVERTED,
                note,
                action="Revert",
                warning=True,
            )
        return True

    def _remember(self, md: Manifest, kind: str, name: str, fingerprint: str | None) -> None:
        """What a model's object holds now of what we want (None: we deleted it)."""
        model = (md["metadata"]["namespace"], md["metadata"]["name"])
        held = self._held.setdefault(model, {})
        if fingerprint is None:
            held.pop((kind, name), None)
        else:
            held[(kind, name)] = fingerprint

    def _remove_autoscaler(self, md: Manifest) -> bool:
        """autoscaling was taken out of the spec: the HPA we made goes too."""
        namespace, name = md["metadata"]["namespace"], md["metadata"]["name"]
        hpa = self.cache.get("HorizontalPodAutoscaler", namespace, name)
        owners = (hpa or {}).get("metadata", {}).get("ownerReferences") or []
        if not any(owner.get("uid") == md["metadata"]["uid"] for owner in owners):
            return False
        self.kube.delete("autoscaling/v2", "HorizontalPodAutoscaler", namespace, name)
        self.cache.delete("HorizontalPodAutoscaler", namespace, name)
        self._remember(md, "HorizontalPodAutoscaler", name, None)
        return True

    # ------------------------------------------------------------------ status

    def _report(
        self,
        md: Manifest,
        serving_md: Manifest,
        rendered: Rendered,
        extra: Manifest,
        observed: list[Observed],
        deployment: Manifest | None = None,
        *,
        routine: bool = False,
    ) -> None:
        """Status from what serves (`serving_md`, the stable spec after a rollback).
        `routine`: nothing decided; the write may wait while the rollout goes as planned."""
        meta = md["metadata"]
        if deployment is None:
            deployment = self.cache.get("Deployment", meta["namespace"], meta["name"])
        state = health.assess(deployment)
        if routine and self._keep_quiet(md, rendered, state):
            return
        self._quiet.pop((meta["namespace"], meta["name"]), None)
        status = dict(md.get("status") or {})
        generation = int(meta.get("generation") or 0)
        status.update(serving_now(deployment))
        status.update(
            {
                "observedGeneration": generation,
                "specHash": rendered.spec_hash,
                "currentRevision": current_revision(serving_md, rendered.spec_hash),
                "modelVersion": serving_md["spec"]["model"]["version"],
                "endpoint": rendered.endpoint,
                "replicas": state.replicas,
                "readyReplicas": state.ready_replicas,
                "updatedReplicas": state.updated_replicas,
                **extra,
                "conditions": conditions.merge(
                    status.get("conditions"),
                    [*state.observed, *observed],
                    generation,
                    self.clock(),
                ),
            }
        )
        # The gauges first: whoever sees the status (a test, a dashboard beside `kubectl`)
        # must not find the metrics a step behind it.
        metrics.model_serves(
            meta["namespace"],
            meta["name"],
            ready=conditions.is_true(status["conditions"], c.READY),
            version=str(status["modelVersion"]),
            runtime=str((serving_md["spec"].get("runtime") or {}).get("name", "")),
        )
        self._write_status(md, status)

    def _keep_quiet(self, md: Manifest, rendered: Rendered, state: health.ServingState) -> bool:
        """A rollout going as planned, for less than quiet_seconds: its status waits."""
        current = (md.get("status") or {}).get("conditions")
        if self.quiet_seconds <= 0 or not health.routine(state, current):
            return False
        key = (md["metadata"]["namespace"], md["metadata"]["name"])
        now = self.clock()
        spec_hash, since = self._quiet.get(key, (rendered.spec_hash, now))
        if spec_hash != rendered.spec_hash:
            since = now  # another spec: its rollout starts now
        self._quiet[key] = (rendered.spec_hash, since)
        return (now - since).total_seconds() < self.quiet_seconds

    def _quiet_left(self, md: Manifest) -> float | None:
        """Seconds until a waiting status is due (so a stalled rollout is reported even
        when the Deployment says nothing more), or None."""
        found = self._quiet.get((md["metadata"]["namespace"], md["metadata"]["name"]))
        if found is None:
            return None
        waited = (self.clock() - found[1]).total_seconds()
        return max(0.0, self.quiet_seconds - waited) + 0.1

    def _report_failure(self, md: Manifest, reason: str, message: str) -> None:
        """Ready=False with why, after a reconcile that raised; a Warning event when the
        message is new. Never raises: the reconcile's own error is the one to retry on."""
        metrics.RECONCILES.labels(result="error").inc()
        meta = md["metadata"]
        message = f"reconcile failed, retrying with backoff: {message}"[:MAX_FAILURE_MESSAGE]
        status = dict(md.get("status") or {})
        previous = conditions.find(status.get("conditions"), c.READY) or {}
        status["conditions"] = conditions.merge(
            status.get("conditions"),
            [Observed(c.READY, False, reason, message)],
            int(meta.get("generation") or 0),
            self.clock(),
        )
        try:
            self._write_status(md, status)
            if previous.get("message") != message:
                self.kube.event(
                    md, c.MODELDEPLOYMENT_KIND, reason, message, action="Reconcile", warning=True
                )
        except Exception:
            log.warning("could not record the failure of %s/%s", meta["namespace"], meta["name"])

    def _report_invalid(self, md: Manifest, error: InvalidSpecError) -> None:
        meta = md["metadata"]
        status = dict(md.get("status") or {})
        generation = int(meta.get("generation") or 0)
        message = (
            f"{error}. The objects of the last good spec keep serving; fix the field "
            "and apply again"
        )
        previous = conditions.find(status.get("conditions"), c.READY) or {}
        status["conditions"] = conditions.merge(
            status.get("conditions"),
            [Observed(c.READY, False, c.REASON_INVALID_SPEC, message)],
            generation,
            self.clock(),
        )
        if previous.get("message") != message:
            log.warning(
                "invalid spec: %s/%s %s",
                meta["namespace"],
                meta["name"],
                error,
                extra=logs.about(
                    c.MODELDEPLOYMENT_KIND,
                    meta["namespace"],
                    meta["name"],
                    (md["metadata"].get("annotations") or {}).get(c.ANNOTATION_REVISION),
                ),
            )
            self.kube.event(
                md,
                c.MODELDEPLOYMENT_KIND,
                c.EVENT_INVALID_SPEC,
                message,
                action="Validate",
                warning=True,
            )
        self._write_status(md, status)

    def _write_status(self, md: Manifest, status: Manifest) -> None:
        current = md.get("status") or {}
        # None removes a field (merge patch); removing one that is not there is no change.
        status = {k: v for k, v in status.items() if v is not None or k in current}
        if status == current:
            return
        meta = md["metadata"]
        patched = self.kube.patch_status(
            c.API_VERSION, c.MODELDEPLOYMENT_KIND, meta["namespace"], meta["name"], status, current
        )
        self.cache.put(c.MODELDEPLOYMENT_KIND, patched)


def _sooner(first: float | None, second: float | None) -> float | None:
    """The sooner of two "look again in" delays (None: no need)."""
    waits = [w for w in (first, second) if w is not None]
    return min(waits) if waits else None


def validation_due(pod: Manifest) -> bool:
    """A pod the inference gate has yet to decide about: running, its containers ready
    (the model loaded: the runtime's own readiness probe passed), with an address, and
    not validated or failed yet (an unreachable pod is tried again)."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    found = status.get("conditions")
    ready = conditions.find(found, "ContainersReady") or {}
    gate_condition = conditions.find(found, c.CONDITION_VALIDATED) or {}
    decided = gate_condition.get("reason") in (c.REASON_SAMPLES_PASSED, c.REASON_SAMPLES_FAILED)
    return ready.get("status") == "True" and bool(status.get("podIP")) and not decided


def serving_now(deployment: Manifest | None) -> Manifest:
    """What the live Deployment runs, read from it, not from git: the model version of
    its pod template and the git revision it was rendered from. After an automatic
    rollback these differ from spec.model.version, and on-call must see both."""
    if deployment is None:
        return {}
    template_labels = (
        ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    ).get("labels") or {}
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    found: Manifest = {}
    if template_labels.get(c.LABEL_MODEL_VERSION):
        found["servingVersion"] = str(template_labels[c.LABEL_MODEL_VERSION])
    if annotations.get(c.ANNOTATION_REVISION):
        found["servingRevision"] = str(annotations[c.ANNOTATION_REVISION])
    return found


def tracks_of(live_canary: Manifest, live_stable: Manifest) -> canary.Tracks:
    """The two Deployments' sizes as the canary's sizing reads them."""
    spec, status = live_canary.get("spec") or {}, live_canary.get("status") or {}
    generation = int((live_canary.get("metadata") or {}).get("generation") or 0)
    replicas = int(spec.get("replicas") or 0)
    return canary.Tracks(
        canary=replicas,
        canary_available=int(status.get("availableReplicas") or 0),
        stable=int((live_stable.get("spec") or {}).get("replicas") or 0),
        stable_available=int((live_stable.get("status") or {}).get("availableReplicas") or 0),
        canary_settled=int(status.get("observedGeneration") or 0) >= generation
        and int(status.get("updatedReplicas") or 0) >= replicas,
    )
