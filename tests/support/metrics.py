"""The in-process operator's metrics as tests read them: the series of one model or one
ModelSync, never a process-global counter's delta (other tests' objects count too)."""

from __future__ import annotations

from prometheus_client import Counter


def total(counter: Counter, **labels: str) -> float:
    """The sum of `counter`'s series whose labels include `labels` (0: none yet)."""
    return sum(
        sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(key) == value for key, value in labels.items())
    )
