"""The inference gate's pure parts: spec.validation typed, the checks of an answer
(serving/validation.py), the readiness gate on the pod template, and the sync's
inlining of sample files (gitops/samples.py)."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from modelsync.api import constants as c
from modelsync.api.manifest import get, mapping
from modelsync.api.modeldeployment import JsonCheck, parse_spec
from modelsync.gitops import samples
from modelsync.gitops.load import load
from modelsync.runtime.operator import pod_trigger
from modelsync.serving import gate, rollout, validation
from modelsync.serving.reconciler import validation_due
from modelsync.serving.render import render
from modelsync.serving.validation import Answer, PathError, Result

INFER = "/v2/models/iris/infer"
BODY = {"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}


def spec(**validation: Any) -> dict[str, Any]:
    return {
        "model": {"name": "iris", "version": "1", "uri": "s3://models/iris"},
        "runtime": {"name": "mlserver"},
        "validation": {
            "samples": [
                {
                    "name": "setosa",
                    "path": INFER,
                    "body": BODY,
                    "expect": {"json": [{"path": "$.outputs[0].data", "equals": [0]}]},
                },
                {
                    "name": "score",
                    "path": INFER,
                    "body": BODY,
                    "expect": {
                        "maxLatencyMilliseconds": 500,
                        "json": [{"path": "$['scores'][1]", "equals": 0.8, "tolerance": 0.05}],
                    },
                },
            ],
            **validation,
        },
    }


def answer(document: object, status: int = 200, seconds: float = 0.01) -> Answer:
    return Answer(status=status, body=json.dumps(document).encode(), seconds=seconds)


GOOD = {"outputs": [{"data": [0]}], "scores": [0.1, 0.82]}


def test_validation_is_typed_with_the_crd_defaults() -> None:
    typed = parse_spec(spec()).validation
    assert typed is not None
    first = typed.samples[0]
    assert (first.method, first.expect.status, first.expect.max_latency_milliseconds) == (
        "POST",
        200,
        None,
    )
    assert first.expect.json == (JsonCheck("$.outputs[0].data", [0]),)
    assert typed.samples[1].expect.json[0].tolerance == 0.05
    assert (typed.required, typed.timeout_seconds) == (2, 10)
    assert parse_spec(spec(minPassing=1)).validation.required == 1  # type: ignore[union-attr]
    assert parse_spec({**spec(), "validation": None}).validation is None


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.outputs[0].data", ("outputs", 0, "data")),
        ("$['a b'][12]", ("a b", 12)),
        ('$["x"].y_z-1', ("x", "y_z-1")),
    ],
)
def test_json_paths_parse_into_steps(path: str, steps: tuple[object, ...]) -> None:
    assert validation.parse_path(path) == steps


@pytest.mark.parametrize("path", ["outputs", "$.outputs[*]", "$..data", "$[-1]", "$.a[?(@.b)]"])
def test_json_paths_that_cannot_match_are_refused(path: str) -> None:
    with pytest.raises(PathError):
        validation.parse_path(path)


def test_json_equality_is_json_not_python() -> None:
    assert validation.same([0, 1.0, {"a": None}], [0.0, 1, {"a": None}])
    assert not validation.same(1, True)
    assert not validation.same([1], [1, 2])
    assert not validation.same({"a": 1}, {"a": 1, "b": 2})
    assert not validation.same("1", 1)


def test_an_answer_passes_when_status_latency_and_values_hold() -> None:
    typed = parse_spec(spec()).validation
    assert typed is not None
    first, second = typed.samples
    assert validation.judge(first, answer(GOOD)) == ""
    assert validation.judge(second, answer(GOOD)) == ""
    verdict = validation.verdict(typed, [answer(GOOD), answer(GOOD)])
    assert verdict.result is Result.PASSED
    assert verdict.message == "2 of 2 samples passed (2 needed)"


@pytest.mark.parametrize(
    ("got", "words"),
    [
        (answer({"outputs": [{"data": [2]}]}), "expected $.outputs[0].data == [0], got [2]"),
        (answer({"outputs": []}), "expected $.outputs[0].data == [0], got nothing there"),
        (answer({"error": "no"}, status=500), 'expected HTTP 200, got 500: {"error": "no"}'),
        (Answer(status=200, body=b"<html>"), "expected a JSON answer, got <html>"),
        (Answer(error="no whole answer within 10s"), "no whole answer within 10s"),
    ],
)
def test_a_failed_answer_names_the_sample_request_expected_and_actual(
    got: Answer, words: str
) -> None:
    typed = parse_spec(spec()).validation
    assert typed is not None
    failed = validation.judge(typed.samples[0], got)
    assert failed.startswith(f"sample setosa (POST {INFER} " + '{"inputs":'), failed
    assert failed.endswith(words), failed


def test_tolerance_and_latency_bounds() -> None:
    typed = parse_spec(spec()).validation
    assert typed is not None
    score = typed.samples[1]
    near = validation.judge(score, answer({**GOOD, "scores": [0, 0.84]}))
    assert near == ""
    far = validation.judge(score, answer({**GOOD, "scores": [0, 0.9]}))
    assert far.endswith("expected $['scores'][1] == 0.8 ± 0.05, got 0.9"), far
    text = validation.judge(score, answer({**GOOD, "scores": [0, "0.8"]}))
    assert text.endswith("""expected $['scores'][1] a number near 0.8, got "0.8\""""), text
    slow = validation.judge(score, answer(GOOD, seconds=0.75))
    assert slow.endswith("expected an answer within 500 ms, took 750 ms"), slow


def test_min_passing_and_an_unreachable_pod() -> None:
    typed = parse_spec(spec(minPassing=1)).validation
    assert typed is not None
    bad = answer({"outputs": [{"data": [1]}], "scores": [0, 0.8]})
    one = validation.verdict(typed, [bad, answer(GOOD)])
    assert one.result is Result.PASSED
    assert one.message.startswith("1 of 2 samples passed (1 needed); sample setosa")
    none = validation.verdict(typed, [bad, answer({"scores": []})])
    assert none.result is Result.FAILED
    assert none.message.startswith("0 of 2 samples passed (1 needed): sample setosa")
    refused = Answer(error="pod 198.18.96.7:8080 unreachable: refused", unreachable=True)
    gone = validation.verdict(typed, [answer(GOOD), refused])
    assert gone == validation.Verdict(Result.UNREACHABLE, refused.error)


def test_problems_name_the_field() -> None:
    typed = parse_spec(spec()).validation
    assert typed is not None
    assert validation.problems(typed, speaks_http=True) == []
    assert [field for field, _ in validation.problems(typed, speaks_http=False)] == [
        "spec.validation"
    ]


def md(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.MODELDEPLOYMENT_KIND,
        "metadata": {"name": "iris", "namespace": "team", "uid": "u1"},
        "spec": body,
    }


def test_new_pods_carry_the_readiness_gate_and_new_samples_are_a_new_revision() -> None:
    gated = render(md(spec()))
    pod = mapping(gated.deployment, "spec", "template")
    assert get(pod, "spec", "readinessGates") == [{"conditionType": c.CONDITION_VALIDATED}]
    assert c.ANNOTATION_VALIDATION in mapping(pod, "metadata", "annotations")
    plain_spec = spec()
    del plain_spec["validation"]
    plain = render(md(plain_spec))
    assert "readinessGates" not in mapping(plain.deployment, "spec", "template", "spec")
    changed = spec()
    changed["validation"]["samples"][0]["expect"]["json"][0]["equals"] = [1]
    assert len({gated.spec_hash, plain.spec_hash, render(md(changed)).spec_hash}) == 3
    assert render(md(copy.deepcopy(spec()))).spec_hash == gated.spec_hash


def manifest_with(body_files: list[str]) -> str:
    body = spec()
    body["validation"]["samples"] = [
        {"name": f"s{i}", "path": INFER, "bodyFile": name} for i, name in enumerate(body_files)
    ]
    return json.dumps(md(body) | {"metadata": {"name": "iris"}}, indent=1)


def inline(tmp_path: Path, body_files: list[str]) -> tuple[list[Any], list[str]]:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "iris.json").write_text(manifest_with(body_files))
    loaded = load(tmp_path, "models")
    assert not loaded.errors
    errors = samples.inline(loaded.objects, tmp_path, lambda f: (tmp_path / f).read_text())
    return [o.manifest for o in loaded.objects], [str(e) for e in errors]


def test_sample_files_beside_the_manifest_are_inlined_and_never_read_as_manifests(
    tmp_path: Path,
) -> None:
    (tmp_path / "models" / "samples").mkdir(parents=True)
    (tmp_path / "models" / "samples" / "a.body.json").write_text(json.dumps(BODY))
    (tmp_path / "shared.body.json").write_text("[1, 2]")
    objects, errors = inline(tmp_path, ["samples/a.body.json", "../shared.body.json"])
    assert errors == []
    sent = objects[0]["spec"]["validation"]["samples"]
    assert [s["body"] for s in sent] == [BODY, [1, 2]]
    assert all("bodyFile" not in s for s in sent)


def test_sample_files_are_bounded_per_file_and_per_model(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    big = json.dumps(["x" * (samples.MAX_FILE_BYTES - 10)])
    (tmp_path / "models" / "big.body.json").write_text(json.dumps(["x" * samples.MAX_FILE_BYTES]))
    for i in range(5):
        (tmp_path / "models" / f"{i}.body.json").write_text(big)
    _, errors = inline(tmp_path, ["big.body.json"])
    assert len(errors) == 1, errors
    assert "a sample file may have 65536" in errors[0], errors
    _, errors = inline(tmp_path, [f"{i}.body.json" for i in range(5)])
    assert len(errors) == 1, errors
    assert "samples[4]" in errors[0], errors
    assert "would exceed 262144 bytes" in errors[0]
    (tmp_path / "models" / "bad.body.json").write_text("{not json")
    _, errors = inline(tmp_path, ["bad.body.json"])
    assert len(errors) == 1, errors
    assert "bad.body.json: not JSON" in errors[0], errors


def gated_pod(
    name: str, spec_hash: str, reason: str = "", message: str = "", ip: str = "198.18.96.9"
) -> dict[str, Any]:
    conditions = [{"type": "ContainersReady", "status": "True"}]
    if reason:
        status = "True" if reason == c.REASON_SAMPLES_PASSED else "False"
        conditions.append(
            {"type": c.CONDITION_VALIDATED, "status": status, "reason": reason, "message": message}
        )
    return {
        "metadata": {"name": name, "labels": {c.LABEL_SPEC_HASH: spec_hash}},
        "status": {"podIP": ip, "hostIP": "198.18.0.2", "conditions": conditions},
    }


def past_deadline() -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {"progressDeadlineSeconds": 90},
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "m"}
            ],
        },
    }


def test_a_pod_that_failed_its_samples_fails_the_rollout_with_their_words() -> None:
    said = "0 of 1 samples passed (1 needed): sample setosa (POST /x): expected HTTP 200, got 500"
    pods = [gated_pod("old", "aaa", c.REASON_SAMPLES_FAILED, "old"), gated_pod("new", "bbb")]
    assert rollout.detect_failure(None, pods, "bbb", max_restarts=3) is None
    pods.append(gated_pod("new-2", "bbb", c.REASON_SAMPLES_FAILED, said))
    failure = rollout.detect_failure(None, pods, "bbb", max_restarts=3)
    assert failure == rollout.Failure(
        c.REASON_SAMPLES_FAILED, f"pod new-2 failed validation: {said}"
    )


def test_an_unreachable_pod_fails_the_rollout_at_the_deadline_with_that_reason() -> None:
    said = "pod 198.18.96.9:8080 unreachable: Connection refused"
    pods = [gated_pod("new", "bbb", c.REASON_POD_UNREACHABLE, said)]
    assert rollout.detect_failure(None, pods, "bbb", max_restarts=3) is None
    failure = rollout.detect_failure(past_deadline(), pods, "bbb", max_restarts=3)
    assert failure == rollout.Failure(
        c.REASON_POD_UNREACHABLE,
        f"not validated within progressDeadlineSeconds=90: pod new: {said}",
    )
    other = rollout.detect_failure(past_deadline(), [gated_pod("new", "bbb")], "bbb", 3)
    assert other is not None
    assert other.reason == c.REASON_PROGRESS_DEADLINE_EXCEEDED


def test_the_gate_looks_at_loaded_pods_not_yet_decided_and_never_at_the_node() -> None:
    assert validation_due(gated_pod("p", "h"))
    assert validation_due(gated_pod("p", "h", c.REASON_POD_UNREACHABLE))
    assert not validation_due(gated_pod("p", "h", c.REASON_SAMPLES_PASSED))
    assert not validation_due(gated_pod("p", "h", c.REASON_SAMPLES_FAILED))
    assert not validation_due(gated_pod("p", "h", ip=""))
    loading = gated_pod("p", "h")
    loading["status"]["conditions"][0]["status"] = "False"
    assert not validation_due(loading)
    assert gate.address_refusal("198.18.96.9", "198.18.0.2") == ""
    assert "hostNetwork" in gate.address_refusal("198.18.0.2", "198.18.0.2")
    assert gate.address_refusal("127.0.0.1", "198.18.0.2")
    assert gate.address_refusal("169.254.169.254", "198.18.0.2")
    assert gate.address_refusal("None", "198.18.0.2")


@pytest.mark.parametrize(
    "pod_ip",
    [
        "0.0.0.0",  # noqa: S104 - connect() to it reaches the operator's own host (loopback)
        "::",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:7f00:1",  # the same, in hex
        "0:0:0:0:0:ffff:127.0.0.2",
        "::ffff:169.254.169.254",  # IPv4-mapped link-local: cloud metadata
        "::ffff:0.0.0.0",
    ],
)
def test_security_the_gate_refuses_unspecified_and_mapped_addresses(pod_ip: str) -> None:
    """A pod's status.podIP is written by whoever may update pod status; the operator sends
    samples only to what can be another pod, never to itself or its node's metadata."""
    assert "not a pod address" in gate.address_refusal(pod_ip, "198.18.0.2")
    assert gate.address_refusal("::ffff:198.18.96.9", "198.18.0.2") == ""  # a pod, mapped


def test_samples_are_sent_bounded_in_size_and_time_to_a_real_server() -> None:
    """A server on loopback that answers, answers too much, or never answers."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = json.loads(await reader.readexactly(length))
        if body == "slow":
            await asyncio.sleep(5)
        answer = json.dumps({"got": body}).encode()
        if body == "big":
            answer = b" " * (gate.BODY_LIMIT + 10)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + answer)
        await writer.drain()
        writer.close()

    def sample(body: object) -> Any:
        return parse_spec(
            {**spec(), "validation": {"samples": [{"name": "s", "path": "/p", "body": body}]}}
        ).validation.samples[0]  # type: ignore[union-attr]

    async def run() -> list[Answer]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            answers = [
                await gate.send(sample(body), "127.0.0.1", port, 1.0)
                for body in ({"x": 1}, "big", "slow")
            ]
        server.close()
        closed = await gate.send(sample(1), "127.0.0.1", port, 1.0)
        return [*answers, closed]

    ok, big, slow, closed = asyncio.run(run())
    assert (ok.status, json.loads(ok.body), ok.error) == (200, {"got": {"x": 1}}, "")
    assert big.error.startswith("answer refused: answer longer than"), big
    assert slow.error == "no whole answer within 1s", slow
    assert closed.unreachable, closed
    assert closed.error.startswith("pod 127.0.0.1:"), closed


def test_a_gated_pod_is_looked_at_again_when_what_the_gate_waits_on_changes() -> None:
    plain = gated_pod("p", "h")
    assert pod_trigger(plain) == (0,)  # no gate: only its restarts matter, as before
    gated = {**plain, "spec": {"readinessGates": [{"conditionType": c.CONDITION_VALIDATED}]}}
    before = pod_trigger(gated)
    passed = copy.deepcopy(gated)
    passed["status"]["conditions"].append(
        {"type": c.CONDITION_VALIDATED, "status": "True", "reason": c.REASON_SAMPLES_PASSED}
    )
    moved = copy.deepcopy(gated)
    moved["status"]["podIP"] = "198.18.96.10"
    assert len({before, pod_trigger(passed), pod_trigger(moved)}) == 3
