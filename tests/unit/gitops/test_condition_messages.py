"""Condition messages stay one short line for `kubectl get`; the whole is elsewhere."""

from __future__ import annotations

from typing import Any

from modelsync.gitops.load import RevisionError, Source
from modelsync.gitops.reconciler import _errors_headline
from modelsync.gitops.status import MAX_HEADLINE
from modelsync.gitops.status import cut as _cut
from modelsync.serving.reconciler import stable_model


def test_a_long_message_is_cut_to_the_headline_length() -> None:
    assert _cut("short") == "short"
    cut = _cut("x" * 500)
    assert len(cut) == MAX_HEADLINE
    assert cut.endswith("…")


def test_the_errors_headline_counts_them_and_names_the_first_by_place() -> None:
    errors = [
        RevisionError(
            Source("b.yaml", 3), "spec.replicas: must be >= 0 " + "x" * 300, "ModelDeployment a"
        ),
        RevisionError(Source("a.yaml", 9), "invalid YAML", ""),
    ]
    headline = _errors_headline(errors)
    assert headline.startswith("rejected, nothing applied (2 errors in status.errors): a.yaml:9:")
    assert len(headline) <= MAX_HEADLINE


def test_a_rolled_back_model_takes_git_s_replicas_onto_the_stable_spec() -> None:
    md: dict[str, Any] = {
        "metadata": {"name": "iris", "namespace": "team"},
        "spec": {"model": {"version": "2"}, "replicas": 3},
        "status": {"stableSpec": {"model": {"version": "1"}, "replicas": 2}},
    }
    stable = stable_model(md)
    assert stable["spec"] == {"model": {"version": "1"}, "replicas": 3}
    assert md["status"]["stableSpec"]["replicas"] == 2  # the status is not changed
