"""The canary's sizing (serving/canary.py `size`), without a cluster: every state the
two Deployments pass through for 1, 2 and 4 replicas, and that the pods available
never drop below the bound on the way.

`walk` plays the cluster: after each write the stable Deployment's removed pods stop
serving at once (they terminate) while the canary's new pods are not available yet;
one look later they are. Each state is (weight, canary replicas, stable replicas -
None when the autoscaler owns them -, pods available right after the write, sized).
"""

from __future__ import annotations

from modelsync.serving.canary import Capacity, Sizes, Tracks, capacity, size

State = tuple[int, int, int | None, int, bool]


def walk(cap: Capacity, weights: list[int]) -> list[State]:
    live, stable_available = Tracks(0, 0, cap.total), cap.total
    states: list[State] = []
    for weight in weights:
        while True:
            sizes: Sizes = size(cap, weight, live)
            stable = cap.total if sizes.stable is None else sizes.stable
            stable_available = min(stable_available, stable)
            live = Tracks(sizes.canary, min(live.canary_available, sizes.canary), stable)
            available = live.canary_available + stable_available
            states.append((weight, sizes.canary, sizes.stable, available, sizes.sized))
            if sizes.sized:
                break
            live, stable_available = Tracks(live.canary, live.canary, stable), stable
    return states


def test_one_replica_keeps_its_stable_pod_until_the_canary_takes_all() -> None:
    assert walk(capacity(1, None, None), [25, 50, 100]) == [
        (25, 1, 1, 1, False),  # the canary pod comes up beside the stable one
        (25, 1, 1, 2, True),
        (50, 1, 1, 2, True),  # one pod each already
        (100, 1, 0, 1, False),  # the stable pod goes once the canary's serves
        (100, 1, 0, 1, True),
    ]


def test_two_replicas_shrink_the_stable_track_only_by_available_canary_pods() -> None:
    assert walk(capacity(2, None, None), [25, 50, 100]) == [
        (25, 1, 2, 2, False),
        (25, 1, 1, 2, False),
        (25, 1, 1, 2, True),
        (50, 1, 1, 2, True),
        (100, 2, 1, 2, False),
        (100, 2, 0, 2, False),
        (100, 2, 0, 2, True),
    ]


def test_four_replicas_move_one_pod_at_a_time_with_the_default_surge() -> None:
    assert walk(capacity(4, None, None), [25, 50, 100]) == [
        (25, 1, 4, 4, False),
        (25, 1, 3, 4, False),
        (25, 1, 3, 4, True),
        (50, 2, 3, 4, False),
        (50, 2, 2, 4, False),
        (50, 2, 2, 4, True),
        (100, 3, 2, 4, False),
        (100, 4, 1, 4, False),
        (100, 4, 0, 4, False),
        (100, 4, 0, 4, True),
    ]


def test_a_larger_surge_moves_more_pods_at_once() -> None:
    assert walk(capacity(4, "50%", None), [50, 100]) == [
        (50, 2, 4, 4, False),
        (50, 2, 2, 4, False),
        (50, 2, 2, 4, True),
        (100, 4, 2, 4, False),
        (100, 4, 0, 4, False),
        (100, 4, 0, 4, True),
    ]


def test_the_bound_holds_for_every_replica_count_and_step_plan() -> None:
    for total in range(1, 9):
        for surge in (None, 1, "50%", "100%"):
            cap = capacity(total, surge, None)
            for weights in ([50, 100], [25, 50], [10, 20, 30, 100], [100]):
                states = walk(cap, weights)
                assert min(state[3] for state in states) >= cap.floor == total
                # never more pods wanted than the replicas and one surge
                assert max(state[1] + int(state[2] or 0) for state in states) <= total + cap.chunk


def test_the_bound_is_replicas_less_max_unavailable_or_the_autoscaler_minimum() -> None:
    assert capacity(4, None, "25%").floor == 3
    assert capacity(4, None, 1).floor == 3
    assert capacity(3, None, "50%").floor == 2  # rounded down, as Deployments do
    assert capacity(4, "25%", None).chunk == 1
    assert capacity(5, "25%", None).chunk == 2  # rounded up
    assert capacity(4, 0, 1).chunk == 1  # the canary always adds at least one pod
    autoscaled = capacity(3, None, None, min_replicas=2, max_replicas=6)
    assert (autoscaled.floor, autoscaled.autoscaled) == (2, True)


def test_an_autoscaled_model_never_has_its_stable_replicas_written() -> None:
    cap = capacity(3, None, None, min_replicas=2, max_replicas=6)
    states = walk(cap, [25, 50])
    assert all(state[2] is None for state in states)
    # The canary joins the autoscaler's three pods in the weight's ratio: 1 of 4, 3 of 6.
    assert [state[1] for state in states if state[4]] == [1, 3]
    assert min(state[3] for state in states) >= 3


def test_a_lost_canary_pod_gives_its_place_back_to_the_stable_track() -> None:
    cap = capacity(4, None, None)
    assert size(cap, 50, Tracks(canary=2, canary_available=1, stable=2)) == Sizes(2, 3, False)


def test_the_canary_never_shrinks_within_a_step() -> None:
    """Seen on kwok: a canary whose status lagged was cut back, and a serving pod went."""
    cap = capacity(4, None, None)
    assert size(cap, 50, Tracks(canary=2, canary_available=0, stable=3)).canary == 2
    unsettled = Tracks(canary=2, canary_available=2, stable=2, canary_settled=False)
    assert size(cap, 50, unsettled) == Sizes(2, 2, False)  # serving, not judged yet


def test_steps_edited_to_a_lower_weight_give_canary_pods_back_only_as_stable_ones_serve() -> None:
    cap = capacity(4, None, None)
    at_half = Tracks(canary=2, canary_available=2, stable=2, stable_available=2)
    first = size(cap, 25, at_half)
    assert first == Sizes(2, 3, False)  # the stable track grows; the canary keeps its pods
    covered = Tracks(canary=2, canary_available=2, stable=3, stable_available=3)
    assert size(cap, 25, covered) == Sizes(1, 3, False)
    assert size(cap, 25, Tracks(1, 1, 3, 3)) == Sizes(1, 3, True)
