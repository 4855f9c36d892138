"""Serve, the inference gate: what spec.validation's samples must get back. Pure.

Each new pod of a model with `spec.validation` carries a readiness gate; the
operator sends it the samples (serving/gate.py, the I/O) and sets the gate's
condition from `verdict`. This module holds the decisions only: which
validations cannot work at all (`problems`, refused with the revision), whether
one answer passes its sample (`judge`), and what the pod's condition says
(`verdict`), with the request, the expected and the actual answer in words.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeGuard

from modelsync.api.modeldeployment import JsonCheck, Sample, Validation

# How much of a request or an answer a message quotes.
QUOTE_CHARS = 200
# A JSON path: `$`, then `.name`, `['name']` / `["name"]` or `[index]`, any number of times.
_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)")
_QUOTED = re.compile(r"\[(?:'([^'\\]*)'|\"([^\"\\]*)\")\]")
_INDEX = re.compile(r"\[(\d{1,9})\]")

Step = str | int


class PathError(ValueError):
    """A JSON path that cannot match anything."""


def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of a JSON path; PathError saying why none can match."""
    if not path.startswith("$"):
        raise PathError(f"{path!r} must start with $ (the whole answer)")
    steps: list[Step] = []
    at = 1
    while at < len(path):
        for pattern in (_NAME, _QUOTED, _INDEX):
            match = pattern.match(path, at)
            if match is not None:
                break
        else:
            raise PathError(
                f"{path!r} cannot match: at {path[at:][:20]!r} expected .name, ['name'] or "
                "[index] (filters, wildcards and negative indexes are not supported)"
            )
        if pattern is _INDEX:
            steps.append(int(match.group(1)))
        else:
            steps.append(next(group for group in match.groups() if group is not None))
        at = match.end()
    return tuple(steps)


def find(document: object, steps: tuple[Step, ...]) -> tuple[bool, object]:
    """(found, value) at `steps` of a parsed JSON document."""
    current = document
    for step in steps:
        if isinstance(step, int) and isinstance(current, list) and step < len(current):
            current = current[step]
            continue
        if isinstance(step, str) and isinstance(current, dict) and step in current:
            current = current[step]
            continue
        return False, None
    return True, current


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(expected: object, actual: object) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1."""
    if _is_number(expected) and _is_number(actual):
        return expected == actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(same, expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            same(value, actual[key]) for key, value in expected.items()
        )
    return type(expected) is type(actual) and expected == actual


def problems(validation: Validation, speaks_http: bool) -> list[tuple[str, str]]:
    """(field, message) for each part of `validation` that can never pass: a JSON path
    that cannot match, a tolerance on a value that is not a number, a server that is
    not known to speak HTTP (`speaks_http`: its readiness probe is an HTTP GET)."""
    found: list[tuple[str, str]] = []
    if not speaks_http:
        found.append(
            (
                "spec.validation",
                "the runtime is checked over TCP only, so modelsync cannot tell it answers "
                "HTTP; set spec.runtime.readinessPath (an HTTP path that answers 200 once the "
                "model is loaded) or remove spec.validation",
            )
        )
    for s, sample in enumerate(validation.samples):
        for j, check in enumerate(sample.expect.json):
            where = f"spec.validation.samples[{s}].expect.json[{j}]"
            try:
                parse_path(check.path)
            except PathError as error:
                found.append((f"{where}.path", str(error)))
            if check.tolerance is not None and not _is_number(check.equals):
                found.append(
                    (
                        f"{where}.tolerance",
                        f"a tolerance needs a number in equals, not {_quote(check.equals)}; "
                        "remove the tolerance or compare a single number",
                    )
                )
    return found


@dataclass(frozen=True)
class Answer:
    """What one request got: the HTTP status and body and how long it took; or, with
    `error`, why no (whole) answer came."""

    status: int = 0
    body: bytes = b""
    seconds: float = 0.0
    error: str = ""
    unreachable: bool = False  # no connection at all: retried, not judged


def _quote(value: object) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def _text(body: bytes) -> str:
    text = body[: QUOTE_CHARS * 4].decode("utf-8", "replace")
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def request_text(sample: Sample) -> str:
    """The request, in words: method, path and (the start of) the body."""
    body = "" if sample.body is None else " " + _quote(sample.body)
    return f"{sample.method} {sample.path}{body}"


def _check_json(check: JsonCheck, document: object) -> str:
    """Why the answer fails `check`, or ""."""
    try:
        steps = parse_path(check.path)
    except PathError as error:
        return str(error)
    found, actual = find(document, steps)
    if not found:
        return f"expected {check.path} == {_quote(check.equals)}, got nothing there"
    expected = check.equals
    if check.tolerance is not None and _is_number(expected):
        if not _is_number(actual):
            return f"expected {check.path} a number near {expected}, got {_quote(actual)}"
        distance = abs(float(actual) - float(expected))
        if math.isnan(distance) or distance > check.tolerance:
            return f"expected {check.path} == {expected} ± {check.tolerance:g}, got {actual}"
        return ""
    if not same(check.equals, actual):
        return f"expected {check.path} == {_quote(check.equals)}, got {_quote(actual)}"
    return ""


def judge(sample: Sample, answer: Answer) -> str:
    """Why `answer` fails `sample`, naming the sample and its request; "" when it passes."""
    failed = _failure(sample, answer)
    if not failed:
        return ""
    return f"sample {sample.name} ({request_text(sample)}): {failed}"


def _failure(sample: Sample, answer: Answer) -> str:
    expect = sample.expect
    if answer.error:
        return answer.error
    if answer.status != expect.status:
        return f"expected HTTP {expect.status}, got {answer.status}: {_text(answer.body)}"
    limit = expect.max_latency_milliseconds
    if limit is not None and answer.seconds * 1000 > limit:
        return f"expected an answer within {limit} ms, took {answer.seconds * 1000:.0f} ms"
    if not expect.json:
        return ""
    try:
        document = json.loads(answer.body)
    except ValueError:
        return f"expected a JSON answer, got {_text(answer.body)}"
    for check in expect.json:
        failed = _check_json(check, document)
        if failed:
            return failed
    return ""


class Result(Enum):
    PASSED = "Passed"
    FAILED = "Failed"
    UNREACHABLE = "Unreachable"


@dataclass(frozen=True)
class Verdict:
    result: Result
    message: str


def verdict(validation: Validation, answers: list[Answer]) -> Verdict:
    """The pod's validation from the answers to its samples (in order): Unreachable
    when a request found no connection (the pod is tried again), else Passed when at
    least `required` samples passed."""
    unreachable = next((a for a in answers if a.unreachable), None)
    if unreachable is not None:
        return Verdict(Result.UNREACHABLE, unreachable.error)
    failures = [
        failed
        for failed in (judge(s, a) for s, a in zip(validation.samples, answers, strict=True))
        if failed
    ]
    passed = len(validation.samples) - len(failures)
    summary = f"{passed} of {len(validation.samples)} samples passed ({validation.required} needed)"
    if passed >= validation.required:
        return Verdict(Result.PASSED, summary + "".join(f"; {f}" for f in failures))
    return Verdict(Result.FAILED, summary + ": " + "; ".join(failures))
