"""Promotion's pure decisions: environments.yaml, the pin edit, staging's health."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from modelsync.api import constants as c
from modelsync.gitops.promotion import (
    PromotionError,
    environments,
    find_model,
    pick,
    pin,
    unhealthy,
)
from tests.support.paths import REPO

EXAMPLE = REPO / "manifests" / "environments.yaml"

PATCH = """\
# Pinned by hand; promote keeps this comment.
apiVersion: modelsync.io/v1alpha1
kind: ModelDeployment
metadata:
  name: iris
spec:
  model:
    version: "1.0.0"   # the one prod serves
    uri: s3://models/iris/1.0.0
  replicas: 3
"""


def test_promote_the_example_declares_staging_and_prod() -> None:
    declared = environments(EXAMPLE.read_text(), "manifests/environments.yaml")
    assert {name: (e.path, e.sync) for name, e in declared.items()} == {
        "staging": ("manifests/overlays/staging", "staging"),
        "prod": ("manifests/overlays/prod", "prod"),
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: ModelSync\nspec: {path: [\n", "envs.yaml:3: invalid YAML"),
        ("kind: ModelDeployment\nmetadata: {name: iris}\n", "envs.yaml:1: not a ModelSync"),
        ("kind: ModelSync\nmetadata: {name: prod}\nspec: {}\n", "envs.yaml:1: a ModelSync needs"),
        (
            "kind: ModelSync\nmetadata: {name: a, labels: {modelsync.io/environment: prod}}\n"
            "spec: {path: a}\n---\nkind: ModelSync\nmetadata: {name: prod}\nspec: {path: b}\n",
            "envs.yaml:5: environment 'prod' is declared twice (first at line 1)",
        ),
    ],
)
def test_promote_bad_environments_file_is_named_by_line(text: str, expected: str) -> None:
    with pytest.raises(PromotionError) as refused:
        environments(text, "envs.yaml")
    assert str(refused.value).startswith(expected), refused.value
    assert refused.value.code == 2


def test_promote_unknown_environment_names_those_declared() -> None:
    declared = environments(EXAMPLE.read_text(), "envs.yaml")
    with pytest.raises(
        PromotionError, match=re.escape("no environment 'qa' (declared: prod, staging)")
    ):
        pick(declared, "qa", "envs.yaml")


def test_promote_pin_changes_only_the_values_keeping_comments_and_quotes() -> None:
    edited = pin(PATCH, {"iris"}, {"version": "1.10", "uri": "s3://models/iris/1.10"})
    assert edited == PATCH.replace('"1.0.0"', '"1.10"').replace(
        "s3://models/iris/1.0.0", "s3://models/iris/1.10"
    )
    document = yaml.safe_load(edited)
    assert document["spec"]["model"] == {"version": "1.10", "uri": "s3://models/iris/1.10"}


def test_promote_pin_adds_a_field_the_patch_left_to_the_base() -> None:
    edited = pin(PATCH, {"iris"}, {"version": "2", "format": "sklearn"})
    assert edited is not None
    assert yaml.safe_load(edited)["spec"]["model"] == {
        "version": "2",
        "uri": "s3://models/iris/1.0.0",
        "format": "sklearn",
    }
    flow = "kind: ModelDeployment\nmetadata: {name: iris}\nspec:\n  model: {version: '1'}\n"
    edited = pin(flow, {"iris"}, {"version": "2", "format": "onnx"})
    assert edited == "kind: ModelDeployment\nmetadata: {name: iris}\nspec:\n" + (
        "  model: {version: '2', format: onnx}\n"
    )


def test_promote_pin_finds_the_model_among_documents_or_answers_none() -> None:
    other = PATCH.replace("name: iris", "name: fraud")
    both = other + "---\n" + PATCH
    edited = pin(both, {"iris"}, {"version": "2"})
    assert edited is not None
    fraud, iris = yaml.safe_load_all(edited)
    assert (fraud["spec"]["model"]["version"], iris["spec"]["model"]["version"]) == ("1.0.0", "2")
    assert pin(other, {"iris"}, {"version": "2"}) is None
    replicas_only = "kind: ModelDeployment\nmetadata: {name: iris}\nspec: {replicas: 3}\n"
    assert pin(replicas_only, {"iris"}, {"version": "2"}) is None


def test_promote_finds_a_renamed_model_by_its_model_name() -> None:
    rendered = [
        {
            "kind": c.MODELDEPLOYMENT_KIND,
            "metadata": {"name": f"{n}-prod"},
            "spec": {"model": {"name": n}},
        }
        for n in ("iris", "fraud")
    ]
    assert find_model(rendered, "iris") is rendered[0]
    assert find_model(rendered, "fraud-prod") is rendered[1]
    assert find_model(rendered, "ranker") is None


def live(**status: Any) -> dict[str, Any]:
    conditions = [{"type": c.READY, "status": "True"}]
    return {
        "metadata": {"generation": 2, "labels": {c.LABEL_SYNC_NAME: "staging"}},
        "spec": {"model": {"name": "iris", "version": "2", "uri": "s3://m/2"}},
        "status": {
            "observedGeneration": 2,
            "modelVersion": "2",
            "conditions": conditions,
            **status,
        },
    }


def test_promote_staging_health_each_reason_to_refuse() -> None:
    expected = {"version": "2", "uri": "s3://m/2"}
    assert unhealthy(live(), expected, "staging") == []
    assert unhealthy(None, expected, "staging") == [
        "it does not exist in the cluster (has the ModelSync applied it?)"
    ]
    assert unhealthy(live(), expected, "other") == [
        "it is not applied by ModelSync other (but by staging)"
    ]
    rolled = live(
        conditions=[
            {"type": c.READY, "status": "True"},
            {"type": c.ROLLED_BACK, "status": "True"},
        ],
        modelVersion="1",
        failedGitRevision="main@sha1:abc",
    )
    assert unhealthy(rolled, expected, "staging") == [
        "it is rolled back (main@sha1:abc failed)",
        "it serves version 1, git says 2",
    ]
    assert unhealthy(live(observedGeneration=1), expected, "staging") == [
        "its current spec is still being rolled out"
    ]
    assert unhealthy(live(conditions=[]), expected, "staging") == ["it is not Ready"]
    assert unhealthy(live(), {**expected, "uri": "s3://m/3"}, "staging") == [
        "its uri is s3://m/2, git says s3://m/3"
    ]
