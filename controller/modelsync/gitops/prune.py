"""Prune: which applied objects git no longer holds, and whether deleting them is safe.

Pure. A revision with no objects never prunes unless the ModelSync allows an
empty revision (a missing path or a bad merge must not wipe a namespace), and
a revision that would delete more than a set share of the inventory is refused
until the spec raises that share.
"""

from __future__ import annotations

from dataclasses import dataclass

Entry = dict[str, str]


@dataclass(frozen=True)
class PrunePlan:
    delete: list[Entry]
    keep: list[Entry]  # gone from git, but left in place (and in the inventory)
    refusal: str | None = None


def key(entry: Entry) -> tuple[str, str, str, str]:
    group = entry["apiVersion"].rpartition("/")[0]
    return group, entry["kind"], entry.get("namespace", ""), entry["name"]


def plan(
    previous: list[Entry],
    current: list[Entry],
    *,
    enabled: bool,
    allow_empty: bool,
    max_percent: int,
) -> PrunePlan:
    wanted = {key(entry) for entry in current}
    gone = [entry for entry in previous if key(entry) not in wanted]
    if not gone:
        return PrunePlan([], [])
    if not enabled:
        return PrunePlan([], [], None)  # not ours to delete: they drop out of the inventory
    if not current and not allow_empty:
        return PrunePlan(
            [],
            gone,
            (
                f"the revision holds no objects; pruning would delete all {len(gone)} applied "
                "objects. Check spec.path, or set spec.allowEmpty to allow it"
            ),
        )
    share = 100 * len(gone) / len(previous)
    if share > max_percent:
        return PrunePlan(
            [],
            gone,
            (
                f"pruning would delete {len(gone)} of {len(previous)} applied objects "
                f"({share:.0f}%, above spec.maxPrunePercent={max_percent}); raise it to allow this"
            ),
        )
    return PrunePlan(gone, [])
