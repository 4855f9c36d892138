"""Plan: what applying one revision would do, object by object — pure.

`Applier.plan` (apply.py) does the I/O: it reads each object's live self and asks the
API server for a dry run where something would change; the decisions are here, as
plain functions of plain data: which revision an object carries, what differs, and
what the dry run's answer makes of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelsync.api import constants as c
from modelsync.api.manifest import Manifest, mapping, text
from modelsync.gitops.load import LoadedObject
from modelsync.kube.drift import applied_part, differences

NEW = "(new)"  # what `drifted` holds for an object that does not exist yet


@dataclass
class ChangeSet:
    created: list[str] = field(default_factory=list)
    configured: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)  # configured without a change in git

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.configured) + len(self.deleted)

    def by_action(self) -> dict[str, list[str]]:
        return {
            "created": self.created,
            "configured": self.configured,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.configured)} configured, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
        )


@dataclass(frozen=True)
class Planned:
    """One object of a revision: what to apply, what is live, and what would change
    (empty: nothing; ["(new)"]: it does not exist yet)."""

    source: LoadedObject
    desired: Manifest
    live: Manifest | None
    drifted: list[str]


@dataclass(frozen=True)
class PlanStep:
    """One object on its way through `Applier.plan`, before the dry run's answer."""

    source: LoadedObject
    desired: Manifest  # labelled as the ModelSync's, without a revision
    candidate: Manifest  # what a dry run sends: the revision the object keeps
    live: Manifest | None
    drifted: list[str]  # the fields of `candidate` the live object lacks; [NEW]: no object
    judgeable: bool  # a dry run can judge it now (its kind and namespace exist)


def labelled(manifest: Manifest, sync_namespace: str, sync_name: str, shard: str = "") -> Manifest:
    """The object as applied: labelled with its ModelSync and that ModelSync's shard, so
    the same operator shard serves what it applied (a shard label written in git is
    replaced: content does not pick its operator)."""
    out = dict(manifest)
    meta = dict(mapping(out, "metadata"))
    named: Manifest = {
        **mapping(meta, "labels"),
        c.LABEL_SYNC_NAME: sync_name,
        c.LABEL_SYNC_NAMESPACE: sync_namespace,
    }
    named.pop(c.LABEL_SHARD, None)
    if shard:
        named[c.LABEL_SHARD] = shard
    meta["labels"] = named
    out["metadata"] = meta
    return out


def with_revision(manifest: Manifest, revision: str) -> Manifest:
    """ModelDeployments carry the git revision they came from (their status shows it)."""
    if manifest["kind"] != c.MODELDEPLOYMENT_KIND:
        return manifest
    meta = dict(mapping(manifest, "metadata"))
    meta["annotations"] = {**mapping(meta, "annotations"), c.ANNOTATION_REVISION: revision}
    return {**manifest, "metadata": meta}


def candidate(
    desired: Manifest, live: Manifest | None, revision: str
) -> tuple[Manifest, list[str]]:
    """What to compare with the live object, and the fields that differ. A model keeps
    the revision that last changed it: a commit that touches one model of a thousand
    must not rewrite the other 999."""
    kept = text(live, "metadata", "annotations", c.ANNOTATION_REVISION)
    compared = with_revision(desired, kept or revision)
    drifted = differences(applied_part(compared), live) if live else [NEW]
    return compared, drifted


def settle(step: PlanStep, revision: str, verdict: Manifest | None) -> Planned:
    """The plan of one object the API server did not refuse. `verdict` is the dry run's
    object (None: not asked). A dry run that comes back equal to the live object was a
    change of form only (0.5 vs 500m): nothing to write."""
    if not step.drifted:
        return Planned(step.source, step.candidate, step.live, [])
    drifted = step.drifted
    if (
        verdict is not None
        and step.live is not None
        and not differences(applied_part(verdict), step.live)
    ):
        drifted = []
    return Planned(step.source, with_revision(step.desired, revision), step.live, drifted)
