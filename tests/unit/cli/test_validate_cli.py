"""`modelsync validate`: offline, file:line for every problem, exit 0 or 1 (2 for a
path that does not exist), JSON for bots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelsync.cli import main as cli
from modelsync.gitops.check import check_path
from tests.support.paths import FIXTURES, REPO

MANIFESTS = FIXTURES / "manifests"

EXPECTED = {
    "replicas-and-autoscaling.yaml": (8, "set spec.replicas or spec.autoscaling, not both"),
    "scheme.yaml": (9, "runtime triton cannot load a model from https://example.com/model.onnx"),
    "format.yaml": (12, "runtime mlserver cannot serve model format onnx; it serves sklearn"),
    "sync-credentials.yaml": (7, "repo.url must not carry credentials"),
    "syntax.yaml": (4, "invalid YAML"),
    "typo.yaml": (8, "spec.replicaz: unknown field 'replicaz'"),
    "unknown-runtime.yaml": (8, "spec.runtime.name: 'seldon' is not one of"),
}


def test_good_manifests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(MANIFESTS / "good")]) == 0
    assert "2 files, 4 objects: ok" in capsys.readouterr().err


def test_every_broken_file_is_named_with_its_line() -> None:
    report = check_path(MANIFESTS / "broken")
    found = {Path(e.file).name: (e.line, e.message) for e in report.errors}
    assert set(found) == set(EXPECTED)
    for name, (line, words) in EXPECTED.items():
        assert found[name][0] == line, name
        assert words in found[name][1], name


def test_exit_codes_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["validate", str(MANIFESTS / "broken"), "--output", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == len(EXPECTED)
    assert {Path(e["file"]).name for e in report["errors"]} == set(EXPECTED)
    assert cli.main(["validate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_single_file_is_named_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    path = MANIFESTS / "broken" / "typo.yaml"
    assert cli.main(["validate", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path.as_posix()}:8: ModelDeployment typo:")


def test_the_example_repository_validates(capsys: pytest.CaptureFixture[str]) -> None:
    """Its ModelSyncs; the overlays need kustomize (tests/integration/test_kustomize.py)."""
    manifests = REPO / "manifests"
    assert cli.main(["validate", str(manifests / "environments.yaml")]) == 0
    assert "1 files, 2 objects: ok" in capsys.readouterr().err
