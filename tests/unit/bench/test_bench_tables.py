"""The tables of `make bench`'s image, real-node and writes parts: partial figures (a
failed build, a rollout that never answered) still print, and say what happened; the
writes per feature are told as differences to the plain model."""

from __future__ import annotations

import pytest

from tests.bench import image_builds, models, writes
from tests.support import audit


def test_image_rows_show_cold_steps_warm_and_failures() -> None:
    rows = image_builds.rows(
        {
            "mlserver": {
                "cold": {"seconds": 67.8, "steps": {"wheels": 6.1, "base": 42.0}, "bytes": 2**30},
                "warm": {"seconds": 0.283, "steps": {}, "bytes": 2**30},
            },
            "versitygw": {"cold": {"error": "exit 1; last lines of x.log:\nno proxy"}, "warm": {}},
            "operator": {"warm": {"skipped": "only after its cold build"}},
        }
    )
    assert rows[0] == ("mlserver (1024 MiB)", "67.8 s", "wheels 6 s, base 42 s", "0.28 s")
    assert rows[1] == ("versitygw", "failed: exit 1; last lines of x.log:", "", "skipped")
    assert rows[2][1] == "skipped"
    assert rows[2][3] == "skipped: only after its cold build"


def test_model_rows_show_milestones_latency_bumps_and_errors() -> None:
    results = {
        "node_start_s": 2.9,
        "images_imported_s": 18.3,
        "image_import_s": {"mlserver": 7.0},
        "rollouts": {
            "mlserver, version bump 1 -> 2": {"pushed": 0.1, "first correct answer": 14.0},
            "custom": {"pushed": 0.0, "synced": 0.2},
        },
        "latency": {
            "mlserver": {
                "1 client": {
                    "requests": 2000,
                    "p50_ms": 1.6,
                    "p90_ms": 2.2,
                    "p99_ms": 3.8,
                    "max_ms": 9.9,
                    "per_second": 581.2,
                    "errors": 0,
                    "wrong_answers": 0,
                }
            }
        },
        "bump_answer_p50_s": 14.0,
        "bump_answer_max_s": 14.0,
        "gate_seconds": models.gate_seconds(
            {
                f"mlserver, validated bump {v} -> {v + 1}": {
                    "containers ready": 10.0,
                    "pod Ready": 10.0 + v / 10,
                }
                for v in range(1, 11)
            }
        ),
        "errors": ["custom: no correct answer within 600s\nmore"],
    }
    rows = dict(models.table_rows(results))
    assert rows["commit -> first correct prediction: mlserver, version bump 1 -> 2"] == "14.0 s"
    assert rows["commit -> first correct prediction: custom"] == "no answer"
    assert rows["latency mlserver, 2000 requests, 1 client"].startswith("p50 1.6 ms, p90 2.2")
    assert rows["commit -> first correct prediction: version bumps"] == "median 14.0 s, max 14.0 s"
    assert rows["error"] == "custom: no correct answer within 600s"
    assert rows["containers ready -> pod Ready, validated bumps (10)"] == "p50 0.50 s, p95 1.00 s"


@pytest.mark.parametrize("text", ["0", "-3", "many"])
def test_a_bad_request_count_is_refused_with_the_variable_and_an_example(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("BENCH_REQUESTS", text)
    with pytest.raises(SystemExit, match=r"BENCH_REQUESTS=.*e\.g\. 2000"):
        models.requests_count()


def write(resource: str, name: str, verb: str = "patch") -> audit.Write:
    return audit.Write("u", "modelsync/1", verb, resource, "ns", name, 200, False)


def test_a_models_writes_are_those_named_after_it_and_its_events_only() -> None:
    assert writes.about(write("deployments", "canary-1-step"), "canary-1-step")
    assert writes.about(write("deployments", "canary-1-step-canary"), "canary-1-step")
    assert writes.about(write("pods/status", "canary-1-step-5d8f-x2"), "canary-1-step")
    assert writes.about(write("events", "canary-1-step.18a2f"), "canary-1-step")
    assert not writes.about(write("deployments", "canary-3-steps"), "canary-1-step")
    assert not writes.about(write("modelsyncs/status", "sync-plain"), "plain")


def test_writes_by_resource_show_the_difference_to_the_plain_model() -> None:
    counts = writes.by_resource(
        [write("deployments", "a"), write("deployments", "a-canary"), write("events", "a.1")]
    )
    assert counts == {"deployments": 2, "events": 1}
    plain = {"deployments": 1, "services": 1}
    assert writes.difference(counts, plain) == "deployments 2 (+1), events 1 (+1), services 0 (-1)"
    assert writes.difference(plain, plain) == "deployments 1, services 1"
    assert writes.difference({}, {}) == "none"


def test_a_canary_steps_cost_is_the_slope_between_step_counts() -> None:
    assert writes.per_step({1: 7, 3: 13}) == 3.0
    assert writes.per_step({3: 13, 1: 7, 2: 9}) == 3.0  # fewest to most steps
    assert writes.per_step({1: 7}) is None


def phase(runs: list[int]) -> dict[str, object]:
    return writes.summarise([[write("deployments", "m")] * n for n in runs])


def figures(
    cold: dict[str, list[int]], bump: dict[str, list[int]], step: float | None
) -> dict[str, object]:
    cases = {
        name: {
            "label": name,
            "cold": phase(cold[name]),
            "bump": phase(bump[name]),
            "sync_cold": 3,
            "sync_bump": 3,
        }
        for name in cold
    }
    return {
        "replicas": 4,
        "rounds": 3,
        "cases": cases,
        "canary_per_step": step,
        "gate": writes.gate_figures(4),
        "seconds": 61.0,
    }


def test_a_phase_is_told_by_its_median_round_and_the_range() -> None:
    found = phase([15, 14, 17])
    assert (found["writes"], found["runs"]) == (15, [15, 14, 17])
    assert found["by_resource"] == {"deployments": 15}  # of the median round
    assert "15  patch   deployments" in str(found["table"])
    assert writes.spread(found) == "15 (14-17)"
    assert writes.spread(phase([4, 4, 4])) == "4"
    assert phase([5, 8])["writes"] == 5  # of two, the lower


def test_the_writes_table_states_each_feature_against_the_plain_model() -> None:
    found = figures(
        {"plain": [4, 4, 4], "autoscaled": [5, 8, 5], "c1": [4, 4, 4]},
        {"plain": [3, 3, 3], "autoscaled": [3, 3, 3], "c1": [9, 11, 8]},
        2.5,
    )
    rows = writes.rows(found)
    assert rows[0] == ("plain", "4", "3", "", "")
    assert rows[1] == ("autoscaled", "5 (5-8)", "3", "+1", "+0")
    assert rows[2] == ("c1", "4", "9 (8-11)", "+0", "+6")
    assert rows[3] == ("canary, per step", "", "", "", "+2.5 per step")
    assert rows[4] == ("readiness gate", "", "", "+1 per pod", "+1 per new pod")
    text = writes.report(found)
    assert writes.GATE_NOTE in text
    assert "4 cold, 4 per bump at 4 replicas" in text
    assert "the median of 3 models" in text


def test_the_writes_table_leaves_out_the_step_cost_it_could_not_measure() -> None:
    rows = writes.rows(figures({"plain": [4]}, {"plain": [3]}, None))
    assert [row[0] for row in rows] == ["plain", "readiness gate"]
