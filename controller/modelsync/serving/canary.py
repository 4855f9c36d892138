"""Canary rollouts: how to split replicas, which analysis URLs may be queried, and what
a metric says. Pure: the query itself is `analysis.Analyses`, off the reconcile workers.

A canary runs the new revision in a second Deployment (`<name>-canary`) behind
the model's one Service; traffic follows the replica ratio. Each step raises the
canary's weight; a step passes when its pods are ready, its pause is over and,
with `analysis`, the Prometheus query is on the right side of the threshold.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from dataclasses import dataclass
from enum import Enum
from typing import Any

from modelsync.api import constants as c

CANARY_SUFFIX = "-canary"
DEFAULT_PORTS = {"http": 80, "https": 443}
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


def canary_deployment(deployment: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The new revision's Deployment as a canary: its own name, its pods marked."""
    canary: dict[str, Any] = json.loads(json.dumps(deployment))  # a deep copy of plain data
    canary["metadata"]["name"] += CANARY_SUFFIX
    canary["spec"]["replicas"] = replicas
    canary["spec"]["selector"]["matchLabels"][c.LABEL_TRACK] = c.TRACK_CANARY
    canary["spec"]["template"]["metadata"]["labels"][c.LABEL_TRACK] = c.TRACK_CANARY
    return canary


def parse_prometheus(body: dict[str, Any]) -> float | None:
    """The first value of an instant query's result (vector or scalar), or None."""
    if body.get("status") != "success":
        return None
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list) and len(result) == 2:
        return float(result[1])
    if data.get("resultType") == "vector" and result:
        return float(result[0]["value"][1])
    return None


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


def endpoint_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a plain http(s) URL; None for anything else (user info,
    a query or fragment, another scheme, no host, a bad port)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in url or "#" in url:
        return None
    return parts.scheme, parts.hostname, DEFAULT_PORTS[parts.scheme] if port is None else port


def endpoint_text(endpoint: tuple[str, str, int]) -> str:
    scheme, host, port = endpoint
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def parse_endpoint(text: str) -> str:
    """An allowed analysis endpoint as the platform writes it (scheme://host[:port]),
    in the one spelling `refusal` compares; ValueError says what is wrong with it."""
    endpoint = endpoint_of(text)
    if endpoint is None or urllib.parse.urlsplit(text).path not in ("", "/"):
        raise ValueError(
            f"{text!r} is not an analysis endpoint: write scheme://host[:port] "
            "(http or https, no path, user or query), e.g. http://prometheus.monitoring:9090"
        )
    return endpoint_text(endpoint)


def refusal(url: str, allowed: tuple[str, ...]) -> str | None:
    """Why `url` may not be queried (None: it may). Scheme, host and port must equal
    those of an endpoint the platform allows: a tenant's URL must not reach anything
    else the operator can reach (the API server, cloud metadata, other tenants)."""
    endpoint = endpoint_of(url)
    if endpoint is not None and endpoint_text(endpoint) in allowed:
        return None
    what = (
        f"{endpoint_text(endpoint)} is not among them"
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


def query_url(analysis: dict[str, Any]) -> str:
    return (
        str(analysis["prometheusURL"]).rstrip("/")
        + "/api/v1/query?"
        + urllib.parse.urlencode({"query": analysis["query"]})
    )


def judge_answer(analysis: dict[str, Any], status: int, body: bytes) -> Verdict:
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
    return judge(
        value, float(analysis["threshold"]), analysis.get("comparison", "LessThan"), source
    )


def unanswered(analysis: dict[str, Any], why: str) -> Verdict:
    return Verdict(Result.INCONCLUSIVE, f"query {analysis['query']!r}: {why}")
