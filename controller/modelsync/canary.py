"""Canary rollouts: how to split replicas, and what a metric says. Pure, but for
`query_prometheus`, the one HTTP call of the metric analysis.

A canary runs the new revision in a second Deployment (`<name>-canary`) behind
the model's one Service; traffic follows the replica ratio. Each step raises the
canary's weight; a step passes when its pods are ready, its pause is over and,
with `analysis`, the Prometheus query is on the right side of the threshold.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from enum import Enum
from typing import Any

from modelsync import constants as c

CANARY_SUFFIX = "-canary"
QUERY_TIMEOUT_SECONDS = 5.0


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


def query_prometheus(analysis: dict[str, Any]) -> Verdict:
    """Run the analysis query against the Prometheus HTTP API and judge the answer."""
    url = (
        analysis["prometheusURL"].rstrip("/")
        + "/api/v1/query?"
        + urllib.parse.urlencode({"query": analysis["query"]})
    )
    source = f"query {analysis['query']!r}"
    try:
        with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_SECONDS) as response:  # noqa: S310 - the spec's own URL
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return Verdict(Result.INCONCLUSIVE, f"{source}: Prometheus answered HTTP {error.code}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Verdict(Result.INCONCLUSIVE, f"{source}: Prometheus unreachable ({error})")
    try:
        value = parse_prometheus(body)
    except (KeyError, IndexError, TypeError, ValueError):
        value = None
    return judge(
        value, float(analysis["threshold"]), analysis.get("comparison", "LessThan"), source
    )
