"""The shares of a pool by namespace (kube/shares.py): work-conserving, fewest held
first, and how many are ahead of a waiter."""

from __future__ import annotations

from modelsync.kube.shares import Pool


def test_a_namespace_alone_takes_every_unit_and_a_newcomer_gets_the_next_free_one() -> None:
    pool: Pool[str] = Pool(capacity=8)
    for i in range(40):
        pool.wait("noisy", f"n{i}")
    taken = [pool.take() for _ in range(9)]
    assert taken[:8] == [f"n{i}" for i in range(8)]
    assert taken[8] is None
    pool.wait("quiet", "q0")
    assert (pool.ahead("q0"), pool.ahead("n8")) == (0, 1)
    pool.leave("n0")
    assert pool.take() == "q0"  # the cap applies only now that another namespace waits
    pool.leave("n1")
    assert pool.take() == "n8"  # nobody else waits: nothing is lost
    assert pool.holds("q0")
    assert pool.ahead("q0") is None


def test_ahead_counts_what_the_namespaces_hold_and_who_asked_first() -> None:
    pool: Pool[str] = Pool(capacity=3)
    for name in ("a0", "a1", "a2"):
        pool.wait("a", name)
    for _ in range(3):
        pool.take()
    for name in ("a3", "a4", "b0", "c0", "b1"):
        pool.wait(name[0], name)
    # Served next, unit by unit: b0 and c0 (holding none), b1 and c1 would come before
    # a3 (a holds 3): b0, c0, b1, then a3 (rank 3) and a4.
    assert [pool.ahead(name) for name in ("b0", "c0", "b1", "a3", "a4")] == [0, 1, 2, 3, 4]
    order = []
    for held in ("a0", "a1", "a2", "b0", "c0"):
        pool.leave(held)
        order.append(pool.take())
    # a gave back two units meanwhile: a3 came sooner than counted (`ahead` is as things
    # stand, no unit given back).
    assert order == ["b0", "c0", "a3", "b1", "a4"]


def test_without_a_capacity_every_taker_is_served_fairly() -> None:
    pool: Pool[str] = Pool()
    for name in ("a0", "a1", "b0"):
        pool.wait(name[0], name)
    assert [pool.take(), pool.take(), pool.take(), pool.take()] == ["a0", "b0", "a1", None]
    pool.leave("b0")
    pool.leave("b0")  # twice is once
    pool.wait("a", "a0")  # already holding: changes nothing
    assert pool.waiting() == 0
