"""Canary rollouts: how to split replicas, which analysis URLs may be queried, and what
a metric says. Pure: the query itself is `analysis.Analyses`, off the reconcile workers.

A canary runs the new revision in a second Deployment (`<name>-canary`) behind
the model's one Service; traffic follows the replica ratio. Each step raises the
canary's weight; `size` moves both tracks towards it without giving up capacity
(the canary grows first, the stable track shrinks only by canary pods available).
A step passes when its sizes are reached and every canary pod is available, its
pause is over and, with `analysis`, every query is on the right side of its
threshold. After the promotion, `watch_look` keeps judging the analysis for
`postPromotionSeconds`; its state (and the spec to go back to) is in status.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from modelsync.api import constants as c
from modelsync.api.conditions import timestamp
from modelsync.api.manifest import JsonValue, Manifest, child, get, integer, items, mapping, text
from modelsync.api.modeldeployment import Analysis, CanaryStep
from modelsync.api.origins import origin, origin_text, parse_origin

CANARY_SUFFIX = "-canary"
# Named in refusals, so a tenant knows what to ask the platform team for.
ENDPOINTS_SETTING = (
    "analysis_endpoints (`modelsync run --analysis-endpoint`, chart value "
    "operator.analysisEndpoints)"
)


class Result(Enum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    result: Result
    message: str


def split(total: int, weight: int) -> tuple[int, int]:
    """(canary, stable) replicas for `weight` percent of `total`: at least one canary
    pod, and the stable version keeps at least one until the canary takes all."""
    total = max(1, total)
    if weight >= 100:
        return total, 0
    canary = max(1, math.ceil(total * weight / 100))
    return canary, max(1, total - canary)


def scaled(value: int | str | None, total: int, default: str, *, up: bool) -> int:
    """A RollingUpdate int-or-percent (maxSurge, maxUnavailable) as a count of `total`
    pods, rounded as the Deployment controller rounds it: up for a surge, down for
    unavailability."""
    text = str(default if value is None else value)
    if not text.endswith("%"):
        return max(0, int(text))
    share = total * int(text[:-1]) / 100
    return max(0, math.ceil(share) if up else math.floor(share))


@dataclass(frozen=True)
class Capacity:
    """What a canary must keep serving, from the spec: `total` pods wanted (git's
    replicas, or the autoscaler's count now), at least `floor` of them available
    throughout, at most `chunk` pods added at a time (maxSurge, at least one)."""

    total: int
    floor: int
    chunk: int
    autoscaled: bool = False
    ceiling: int = 0  # autoscaled: the canary's pods at most (maxReplicas)


def capacity(
    total: int,
    max_surge: int | str | None,
    max_unavailable: int | str | None,
    min_replicas: int | None = None,
    max_replicas: int = 0,
) -> Capacity:
    """The bound of a model's canary. With `min_replicas` (autoscaled) the floor is the
    autoscaler's minimum and the stable Deployment's replicas are never written."""
    total = max(1, total)
    chunk = max(1, scaled(max_surge, total, "25%", up=True))
    if min_replicas is not None:
        return Capacity(total, min(total, min_replicas), chunk, True, max(1, max_replicas))
    return Capacity(total, total - scaled(max_unavailable, total, "0", up=False), chunk)


@dataclass(frozen=True)
class Tracks:
    """The two Deployments as they are: the canary's wanted and available pods, the
    stable Deployment's wanted pods."""

    canary: int = 0
    canary_available: int = 0
    stable: int = 0
    stable_available: int | None = None  # None: all of `stable`
    # The canary's controller has seen its spec and every pod is of it: until then its
    # available pods still serve (they count for capacity) but do not judge a step.
    canary_settled: bool = True


@dataclass(frozen=True)
class Sizes:
    """What to write for one look: the canary's replicas, the stable's (None: not ours,
    the autoscaler's), and whether the step's sizes are reached with every canary pod
    available (only then do its pause and analysis count)."""

    canary: int
    stable: int | None
    sized: bool


def targets(cap: Capacity, weight: int) -> tuple[int, int]:
    """(canary, stable) pods at `weight` percent. Autoscaled, the stable Deployment
    keeps the autoscaler's count and the canary joins it in the weight's ratio."""
    if not cap.autoscaled:
        return split(cap.total, weight)
    if weight >= 100:
        return min(cap.ceiling, cap.total), cap.total
    wanted = math.ceil(cap.total * weight / (100 - weight))
    return max(1, min(cap.ceiling, wanted)), cap.total


def size(cap: Capacity, weight: int, live: Tracks) -> Sizes:
    """The next sizes towards `weight`, never giving up capacity: the stable Deployment
    shrinks only by canary pods already available, and the canary grows at most
    `chunk` pods beyond what serves. Level-based (from the live Deployments alone), so
    a restart or a lost canary pod is met by the same rule: a canary pod that stops
    being available gives its place back to the stable Deployment."""
    want_canary, want_stable = targets(cap, weight)
    ready = min(live.canary_available, live.canary)
    settled = live.canary_settled and ready == want_canary
    if cap.autoscaled:
        # The stable track is the autoscaler's and never shrinks: the canary only adds.
        keep = min(live.canary, want_canary)
        canary = max(keep, min(want_canary, ready + cap.chunk))
        return Sizes(canary, None, settled and canary == live.canary)
    stable_ready = min(
        live.stable, live.stable if live.stable_available is None else live.stable_available
    )
    stable = max(want_stable, cap.total - ready)
    # The canary keeps a pod the stable track does not yet cover - never shrinking
    # within a step, and giving pods back (steps edited to a lower weight) only as
    # the stable track's pods become available.
    keep = min(live.canary, max(want_canary, cap.total - stable_ready))
    canary = max(keep, min(want_canary, cap.total + cap.chunk - stable))
    return Sizes(canary, stable, settled and canary == live.canary and stable == live.stable)


def canary_deployment(deployment: Manifest, replicas: int) -> Manifest:
    """The new revision's Deployment as a canary: its own name, its pods marked."""
    canary: Manifest = json.loads(json.dumps(deployment))  # a deep copy of plain data
    meta = child(canary, "metadata")
    meta["name"] = text(meta, "name") + CANARY_SUFFIX
    child(canary, "spec")["replicas"] = replicas
    child(canary, "spec", "selector", "matchLabels")[c.LABEL_TRACK] = c.TRACK_CANARY
    child(canary, "spec", "template", "metadata", "labels")[c.LABEL_TRACK] = c.TRACK_CANARY
    return canary


def parse_prometheus(body: object) -> float | None:
    """The first value of an instant query's result (vector or scalar), or None.
    ValueError where the value is a string that is not a number."""
    if get(body, "status") != "success":
        return None
    data = mapping(body, "data")
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1])
    if data.get("resultType") == "vector" and isinstance(result, list) and result:
        pair = get(result[0], "value")
        return _number(pair[1]) if isinstance(pair, list) and len(pair) > 1 else None
    return None


def _number(value: JsonValue) -> float | None:
    """A sample's value (Prometheus writes it as a string: "0.25", "NaN")."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return float(value)


def judge(value: float | None, threshold: float, comparison: str, source: str) -> Verdict:
    if value is None or math.isnan(value):
        what = "no data" if value is None else "NaN"
        return Verdict(Result.INCONCLUSIVE, f"{source} returned {what}")
    ok = value < threshold if comparison == "LessThan" else value > threshold
    relation = "<" if comparison == "LessThan" else ">"
    return Verdict(
        Result.PASS if ok else Result.FAIL,
        f"{source} = {value:g}, wanted {relation} {threshold:g}",
    )


def parse_endpoint(text: str) -> str:
    """An allowed analysis endpoint as the platform writes it (scheme://host[:port]),
    in the one spelling `refusal` compares; ValueError says what is wrong with it."""
    return parse_origin(text, "an analysis endpoint", "http://prometheus.monitoring:9090")


def refusal(url: str, allowed: tuple[str, ...]) -> str | None:
    """Why `url` may not be queried (None: it may). Scheme, host and port must equal
    those of an endpoint the platform allows: a tenant's URL must not reach anything
    else the operator can reach (the API server, cloud metadata, other tenants)."""
    endpoint = origin(url)
    if endpoint is not None and origin_text(endpoint) in allowed:
        return None
    what = (
        f"{origin_text(endpoint)} is not among them"
        if endpoint is not None
        else "it is not a plain http(s) URL (no user, query or fragment)"
    )
    listed = ", ".join(allowed) if allowed else "none"
    return (
        f"prometheusURL {url!r} refused before any connection: the operator queries only the "
        f"analysis endpoints of its setting {ENDPOINTS_SETTING} ({listed}), and {what}. "
        "Point spec.rollout.analysis.prometheusURL at one of them, or ask the platform team "
        "to add yours"
    )


def query_url(analysis: Mapping[str, object]) -> str:
    return (
        text(analysis, "prometheusURL").rstrip("/")
        + "/api/v1/query?"
        + urllib.parse.urlencode({"query": text(analysis, "query")})
    )


def judge_answer(analysis: Mapping[str, object], status: int, body: bytes) -> Verdict:
    """The verdict on Prometheus's answer (an HTTP status and the body read)."""
    source = f"query {analysis['query']!r}"
    if status != 200:
        redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
        return Verdict(
            Result.INCONCLUSIVE, f"{source}: Prometheus answered HTTP {status}{redirect}"
        )
    try:
        value = parse_prometheus(json.loads(body))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        value = None
    threshold = get(analysis, "threshold")
    return judge(
        value,
        float(threshold) if isinstance(threshold, int | float) else 0.0,
        text(analysis, "comparison", default="LessThan"),
        source,
    )


def unanswered(analysis: Mapping[str, object], why: str) -> Verdict:
    return Verdict(Result.INCONCLUSIVE, f"query {get(analysis, 'query')!r}: {why}")


def queries_of(analysis: Mapping[str, JsonValue]) -> list[Manifest]:
    """Each query of spec.rollout.analysis as one the endpoint is asked (its URL, query,
    threshold, comparison): `queries`, or the one `query` with its threshold."""
    url = analysis.get("prometheusURL")
    listed = items(analysis, "queries") or [
        {
            "name": "query",
            "query": analysis.get("query"),
            "threshold": analysis.get("threshold"),
            "comparison": analysis.get("comparison", "LessThan"),
        }
    ]
    return [{**item, "prometheusURL": url} for item in listed]


def combine(verdicts: list[Verdict]) -> Verdict:
    """All queries' verdicts as one: any failure fails (and is named first), else any
    query without an answer holds, else it passes."""
    for result in (Result.FAIL, Result.INCONCLUSIVE):
        worst = [v.message for v in verdicts if v.result is result]
        if worst:
            return Verdict(result, "; ".join(worst))
    return Verdict(Result.PASS, "; ".join(v.message for v in verdicts))


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
# Set by the operator on every request, or about the connection: never the Secret's.
_OWN_HEADERS = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "accept", "user-agent")
)
HEADERS_LIMIT = 8 * 1024  # bytes of headers from a Secret, names and values


def analysis_headers(
    secret: Mapping[str, object] | None, namespace: str, name: str
) -> dict[str, str]:
    """The request headers of a Secret named by spec.rollout.analysis.headersSecretRef:
    each key a header, its value the header's value. Only a Secret of our own type is
    read (never a service-account token or a Secret made for something else), and
    only headers that cannot change the request's framing. ValueError says why not."""
    where = f"Secret {namespace}/{name} (spec.rollout.analysis.headersSecretRef)"
    if secret is None:
        raise ValueError(f"{where} does not exist")
    kind = text(secret, "type") or "Opaque"
    if kind != c.SECRET_TYPE_ANALYSIS_HEADERS:
        raise ValueError(
            f"{where} has type {kind!r}; only Secrets of type "
            f"{c.SECRET_TYPE_ANALYSIS_HEADERS!r} are sent to Prometheus: kubectl create secret "
            f"generic {name} --type={c.SECRET_TYPE_ANALYSIS_HEADERS} "
            "--from-literal=Authorization='Bearer ...'"
        )
    headers: dict[str, str] = {}
    for key, encoded in sorted(mapping(secret, "data").items()):
        try:
            value = base64.b64decode(str(encoded), validate=True).decode().strip()
        except (ValueError, UnicodeError):
            raise ValueError(f"{where}: the value of {key!r} is not UTF-8 text") from None
        if not _TOKEN.match(key) or key.lower() in _OWN_HEADERS:
            raise ValueError(
                f"{where}: {key!r} cannot be a request header (a header name of at most 64 "
                f"characters, not one of {', '.join(sorted(_OWN_HEADERS))})"
            )
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"{where}: the value of {key!r} holds a line break or NUL")
        headers[key] = value
    if sum(len(k) + len(v) + 4 for k, v in headers.items()) > HEADERS_LIMIT:
        raise ValueError(f"{where}: its headers are longer than {HEADERS_LIMIT} bytes")
    return headers


# ------------------------------------------------------------------ the step machine
# status.canary: {specHash, step, weight, stepStartedAt, failures, lastAnalysis}.

NOT_AVAILABLE_WAIT = 2.0  # canary pods not all available yet: look again soon
NEXT_STEP_WAIT = 0.1  # a step passed: size the tracks for the next one at once


@dataclass(frozen=True)
class Look:
    """What one look at a canary decided: the state to keep, when to look again, and,
    when the analysis failed too often, why (the model is then rolled back)."""

    state: Manifest
    wait: float
    failed: str | None = None


def state_for(
    current: object,
    spec_hash: str,
    steps: tuple[CanaryStep, ...],
    now: datetime.datetime,
) -> Manifest:
    """The canary's state: the one in status while it is of this spec (at the weight
    its step has in the steps as they are now: a change of steps alone keeps the pod
    template, and so the canary, but moves it), else a new canary at its first step."""
    state = dict(mapping(current))
    if state.get("specHash") == spec_hash:
        step = integer(state, "step")
        state["weight"] = steps[step].weight if step < len(steps) else 100
        return state
    return {
        "specHash": spec_hash,
        "step": 0,
        "weight": steps[0].weight,
        "stepStartedAt": timestamp(now),
        "failures": 0,
        "lastAnalysis": "",
    }


def _elapsed(state: Manifest, now: datetime.datetime) -> float:
    return _seconds_since(text(state, "stepStartedAt"), now)


def _pause(state: Manifest, steps: tuple[CanaryStep, ...]) -> float:
    return float(steps[integer(state, "step")].pause_seconds)


def analysis_due(
    state: Manifest,
    steps: tuple[CanaryStep, ...],
    now: datetime.datetime,
    sized: bool,
) -> bool:
    """The step is to be judged: both tracks have its sizes, every canary pod is
    available (`Sizes.sized`), and its pause is over."""
    return sized and _elapsed(state, now) >= _pause(state, steps)


def advance(
    state: Manifest,
    steps: tuple[CanaryStep, ...],
    analysis: Analysis | None,
    now: datetime.datetime,
    sized: bool,
    verdict: Verdict | None,
    query_deadline: float,
) -> Look:
    """One look at a canary step: hold, advance, or fail. `verdict` is the analysis's
    answer on this step (None while its query runs, or when it was not due); without
    `analysis` (None), the caller passes a PASS. `query_deadline` bounds a query's wait."""
    state = dict(state)
    if not sized:
        return Look(state, NOT_AVAILABLE_WAIT)
    pause, elapsed = _pause(state, steps), _elapsed(state, now)
    if elapsed < pause:
        return Look(state, pause - elapsed)
    if verdict is None:
        # The query runs off the workers; its answer queues this model again. Status
        # keeps the last verdict meanwhile (no write per query).
        return Look(state, query_deadline + 1.0)  # should that wake-up be lost
    state["lastAnalysis"] = verdict.message
    analysis = analysis or Analysis("", "", 0.0)  # no analysis: its defaults, never read
    interval = float(analysis.interval_seconds)
    if verdict.result is Result.PASS:
        step = integer(state, "step") + 1
        state["step"] = step
        state["failures"] = 0
        state["stepStartedAt"] = timestamp(now)
        # Past the last step: weight 100, and the next look promotes (the normal path).
        state["weight"] = 100 if step >= len(steps) else steps[step].weight
        return Look(state, NEXT_STEP_WAIT)
    if verdict.result is Result.FAIL or analysis.inconclusive == "Fail":
        failures = integer(state, "failures") + 1
        state["failures"] = failures
        if failures > analysis.failure_limit:
            failed = (
                f"canary analysis failed {failures} times at weight "
                f"{state['weight']}%: {verdict.message}"
            )
            return Look(state, interval, failed)
        return Look(state, interval)
    return Look(state, interval)  # inconclusive: hold, never promote on no evidence


# ------------------------------------------------------------------ after the promotion
# status.postPromotion: {specHash, startedAt, checks, failures, lastAnalysis, lastCheckAt,
# previousSpec, previousSpecHash, previousRevision}. Its start is in status, so a
# restarted operator watches on for what is left of the window, no longer.


@dataclass(frozen=True)
class WatchLook:
    """One look at the watch after a promotion: the state to keep (None: the window is
    over, the watch ends), when to look again, and why it failed (then the model goes
    back to the previous stable spec)."""

    state: Manifest | None
    wait: float | None
    failed: str | None = None


def watch_start(
    spec_hash: str, previous: Mapping[str, JsonValue], now: datetime.datetime
) -> Manifest:
    """The watch of a promotion of `spec_hash`; `previous` holds the status's stable
    spec, hash and revision from before it (what a failure restores)."""
    return {
        "specHash": spec_hash,
        "startedAt": timestamp(now),
        "checks": 0,
        "failures": 0,
        "lastAnalysis": "",
        "lastCheckAt": "",
        "previousSpec": previous.get("stableSpec"),
        "previousSpecHash": previous.get("stableSpecHash"),
        "previousRevision": previous.get("stableRevision"),
    }


def _seconds_since(text: str, now: datetime.datetime) -> float:
    return (now - datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))).total_seconds()


def watch_due(state: Manifest, analysis: Analysis, now: datetime.datetime) -> bool:
    """A check is due: the window is open and an interval passed since the last check
    (or since the promotion)."""
    if _seconds_since(text(state, "startedAt"), now) >= analysis.post_promotion_seconds:
        return False
    last = text(state, "lastCheckAt") or text(state, "startedAt")
    return _seconds_since(last, now) >= analysis.interval_seconds


def watch_look(
    state: Manifest,
    analysis: Analysis,
    now: datetime.datetime,
    verdict: Verdict | None,
    query_deadline: float,
) -> WatchLook:
    """One look at the watch: end it when its window is over, else wait for the next
    check or its answer, and count failures as a canary step does."""
    remaining = analysis.post_promotion_seconds - _seconds_since(text(state, "startedAt"), now)
    if remaining <= 0:
        return WatchLook(None, None)
    interval = float(analysis.interval_seconds)
    if not watch_due(state, analysis, now):
        last = text(state, "lastCheckAt") or text(state, "startedAt")
        return WatchLook(state, min(interval - _seconds_since(last, now), remaining))
    if verdict is None:
        return WatchLook(state, query_deadline + 1.0)  # the answer queues the model again
    state = {
        **state,
        "checks": integer(state, "checks") + 1,
        "lastCheckAt": timestamp(now),
        "lastAnalysis": verdict.message,
    }
    if verdict.result is Result.PASS:
        state["failures"] = 0
    elif verdict.result is Result.FAIL or analysis.inconclusive == "Fail":
        failures = integer(state, "failures") + 1
        state["failures"] = failures
        if failures > analysis.failure_limit:
            elapsed = analysis.post_promotion_seconds - remaining
            return WatchLook(
                state,
                None,
                f"analysis after the promotion failed {failures} times "
                f"({elapsed:.0f}s into its {analysis.post_promotion_seconds}s watch): "
                f"{verdict.message}",
            )
    return WatchLook(state, min(interval, remaining))
