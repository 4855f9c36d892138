"""The canary step machine (serving/canary.py), without a cluster: when a step is
judged, how it advances, holds or fails."""

from __future__ import annotations

import dataclasses
import datetime

from modelsync.api.modeldeployment import Analysis, CanaryStep
from modelsync.serving.canary import (
    NEXT_STEP_WAIT,
    NOT_AVAILABLE_WAIT,
    Result,
    Verdict,
    advance,
    analysis_due,
    state_for,
)

T0 = datetime.datetime(2026, 12, 1, 8, 0, tzinfo=datetime.UTC)
STEPS = (CanaryStep(weight=20, pause_seconds=60), CanaryStep(weight=50))
ANALYSIS = Analysis("http://198.18.0.1:9090", "q", 0.5, interval_seconds=15, failure_limit=1)
PASS, FAIL = Verdict(Result.PASS, "p95 0.1 < 0.5"), Verdict(Result.FAIL, "p95 0.9 >= 0.5")
UNKNOWN = Verdict(Result.INCONCLUSIVE, "no data")


def later(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_a_new_spec_starts_at_the_first_step() -> None:
    state = state_for({"specHash": "old", "step": 1, "weight": 50}, "new", STEPS, T0)
    assert (state["specHash"], state["step"], state["weight"], state["failures"]) == (
        "new",
        0,
        20,
        0,
    )
    assert state_for(state, "new", STEPS, later(5)) == state


def test_a_step_waits_for_its_pods_then_for_its_pause() -> None:
    state = state_for(None, "h", STEPS, T0)
    assert not analysis_due(state, STEPS, later(90), sized=False)
    look = advance(state, STEPS, ANALYSIS, later(90), False, None, 10.0)
    assert (look.state, look.wait) == (state, NOT_AVAILABLE_WAIT)
    assert not analysis_due(state, STEPS, later(20), sized=True)
    look = advance(state, STEPS, ANALYSIS, later(20), True, None, 10.0)
    assert look.wait == 40.0
    assert analysis_due(state, STEPS, later(60), sized=True)


def test_a_running_query_holds_the_step_until_its_answer() -> None:
    state = state_for(None, "h", STEPS, T0)
    look = advance(state, STEPS, ANALYSIS, later(61), True, None, 10.0)
    assert (look.state, look.wait, look.failed) == (state, 11.0, None)


def test_a_passed_step_advances_and_the_last_one_takes_all_traffic() -> None:
    state = state_for(None, "h", STEPS, T0)
    first = advance(state, STEPS, ANALYSIS, later(61), True, PASS, 10.0)
    assert (first.state["step"], first.state["weight"], first.wait) == (1, 50, NEXT_STEP_WAIT)
    assert first.state["lastAnalysis"] == PASS.message
    last = advance(first.state, STEPS, ANALYSIS, later(62), True, PASS, 10.0)
    assert (last.state["step"], last.state["weight"]) == (2, 100)
    assert state["step"] == 0  # the state given is not changed


def test_failures_up_to_the_limit_hold_then_the_canary_fails() -> None:
    state = state_for(None, "h", STEPS, T0)
    once = advance(state, STEPS, ANALYSIS, later(61), True, FAIL, 10.0)
    assert (once.state["failures"], once.wait, once.failed) == (1, 15.0, None)
    twice = advance(once.state, STEPS, ANALYSIS, later(80), True, FAIL, 10.0)
    assert twice.failed is not None
    assert "failed 2 times at weight 20%" in twice.failed


def test_inconclusive_holds_unless_the_analysis_says_it_fails() -> None:
    state = state_for(None, "h", STEPS, T0)
    held = advance(state, STEPS, ANALYSIS, later(61), True, UNKNOWN, 10.0)
    assert (held.state["step"], held.state["failures"], held.failed) == (0, 0, None)
    strict = dataclasses.replace(ANALYSIS, inconclusive="Fail", failure_limit=0)
    failed = advance(state, STEPS, strict, later(61), True, UNKNOWN, 10.0)
    assert failed.failed is not None


def test_a_change_of_steps_alone_moves_the_canary_it_keeps() -> None:
    # The pod template (the spec hash) is the same: the canary stays, at its step's
    # weight as the steps say now.
    state = state_for(None, "h", STEPS, T0)
    moved = state_for(state, "h", (CanaryStep(weight=40), CanaryStep(weight=80)), later(5))
    assert (moved["step"], moved["weight"], moved["stepStartedAt"]) == (
        0,
        40,
        state["stepStartedAt"],
    )
    past = state_for({**state, "step": 2}, "h", STEPS, later(5))
    assert past["weight"] == 100
