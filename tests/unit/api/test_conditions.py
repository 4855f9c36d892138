from __future__ import annotations

import datetime

from modelsync.api.conditions import Observed, find, is_true, merge

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def test_transition_time_moves_only_when_status_flips() -> None:
    first = merge(None, [Observed("Ready", False, "RollingOut", "0 of 1")], 1, T0)
    same = merge(first, [Observed("Ready", False, "RollingOut", "1 of 2")], 2, T1)
    assert same[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert same[0]["message"] == "1 of 2"
    assert same[0]["observedGeneration"] == 2
    flipped = merge(same, [Observed("Ready", True, "Available")], 2, T1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert is_true(flipped, "Ready")


def test_conditions_not_observed_are_kept_and_order_is_stable() -> None:
    current = merge(None, [Observed("RolledBack", True, "ProgressDeadlineExceeded")], 1, T0)
    merged = merge(current, [Observed("Ready", True, "Available")], 1, T1)
    assert [cond["type"] for cond in merged] == ["Ready", "RolledBack"]
    rolled_back = find(merged, "RolledBack")
    assert rolled_back is not None
    assert rolled_back["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert merge(merged, [Observed("Ready", True, "Available")], 1, T1) == merged
