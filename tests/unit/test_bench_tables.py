"""The tables of `make bench`'s image and real-node parts: partial figures (a failed
build, a rollout that never answered) still print, and say what happened."""

from __future__ import annotations

import pytest

from tests.bench import image_builds, models


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
