"""Rendering's first line of defence, with no renderer run: every kustomization is read
and what it names checked before kustomize starts; a chart and its values files
before helm starts; helm's output is split by the template it came from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelsync.api.modelsync import HelmSource, parse_helm
from modelsync.gitops.render import (
    RendererMissingError,
    RenderSettings,
    _helm_documents,
    inspect_kustomization,
    render,
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: b}\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def messages(root: Path, path: str, allow_remote: bool = False) -> list[str]:
    inspection = inspect_kustomization(root, root / path, allow_remote)
    return [str(error) for error in inspection.errors]


def test_kustomize_inspection_accepts_a_base_and_overlay_and_lists_what_it_reads(
    tmp_path: Path,
) -> None:
    root = write(
        tmp_path,
        {
            "base/kustomization.yaml": "resources: [cm.yaml]\n",
            "base/cm.yaml": CM,
            "overlays/prod/kustomization.yaml": (
                "resources: [../../base]\npatches:\n  - path: patch.yaml\n"
                "configMapGenerator:\n  - name: g\n    files: [key=data.txt]\n"
            ),
            "overlays/prod/patch.yaml": CM,
            "overlays/prod/data.txt": "x",
            "unrelated.yaml": CM,
        },
    )
    inspection = inspect_kustomization(root, root / "overlays/prod", False)
    assert inspection.errors == []
    assert {p.relative_to(root).as_posix() for p in inspection.files} == {
        "base/kustomization.yaml",
        "base/cm.yaml",
        "overlays/prod/kustomization.yaml",
        "overlays/prod/patch.yaml",
        "overlays/prod/data.txt",
    }


@pytest.mark.parametrize(
    "reference",
    [
        "https://github.com/org/repo//base?ref=v1",
        "github.com/org/repo/base?ref=v1",
        "git@github.com:org/repo.git",
        "ssh://git@example.com/org/repo",
        "http://127.0.0.1:9/base",
    ],
)
def test_security_kustomize_remote_base_is_refused_unless_allowed(
    tmp_path: Path, reference: str
) -> None:
    root = write(tmp_path, {"app/kustomization.yaml": f"resources:\n  - {reference}\n"})
    found = messages(root, "app")
    assert found == [
        f"app/kustomization.yaml:2: resources: {reference!r} is a remote base; modelsync "
        "renders only files of this revision (the platform setting --allow-remote-bases "
        "would fetch it): vendor it into the repository"
    ]
    assert messages(root, "app", allow_remote=True) == []


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("resources", "resources: [../../../etc]\n"),
        ("resources", "resources: [/etc/passwd]\n"),
        ("components", "components: [../../other-tenant]\n"),
        ("patches", "patches:\n  - path: ../../../x/patch.yaml\n"),
        ("patchesStrategicMerge", "patchesStrategicMerge: [../../../x/patch.yaml]\n"),
        ("configMapGenerator.files", "configMapGenerator:\n  - name: g\n    files: [../../k]\n"),
        ("configMapGenerator.envs", "configMapGenerator:\n  - name: g\n    envs: [../../e]\n"),
        ("replacements", "replacements:\n  - path: ../../../r.yaml\n"),
    ],
)
def test_security_kustomize_reference_outside_the_revision_is_refused(
    tmp_path: Path, field: str, text: str
) -> None:
    root = write(tmp_path / "repo", {"app/kustomization.yaml": text})
    found = messages(root, "app")
    assert len(found) == 1, found
    assert found[0].startswith("app/kustomization.yaml:")
    assert f"{field}: " in found[0]
    assert "is outside the revision" in found[0]


def test_security_kustomize_symlink_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path, {"app/kustomization.yaml": "resources: [passwd.yaml, base]\n"})
    (root / "app/passwd.yaml").symlink_to("/etc/passwd")
    write(root, {"real/kustomization.yaml": "resources: []\n"})
    (root / "app/base").symlink_to(root / "real")
    found = messages(root, "app")
    assert found == [
        "app/kustomization.yaml:1: resources: 'passwd.yaml' goes through the symlink "
        "app/passwd.yaml; symlinks are not rendered, commit the files themselves",
        "app/kustomization.yaml:1: resources: 'base' goes through the symlink app/base; "
        "symlinks are not rendered, commit the files themselves",
    ]


def test_kustomize_missing_resource_cycle_and_bad_yaml_are_named(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "a/kustomization.yaml": "resources:\n  - ../b\n  - gone.yaml\n",
            "b/kustomization.yaml": "resources: [../a]\n",
            "c/kustomization.yaml": "resources: [x.yaml\n",
            "d/kustomization.yaml": "helmCharts:\n  - name: x\n",
            "e/kustomization.yaml": "resources: [../plain]\n",
            "plain/cm.yaml": CM,
        },
    )
    assert messages(root, "a") == [
        "b/kustomization.yaml:1: kustomizations form a cycle: a -> b -> a; remove one of "
        "the references",
        "a/kustomization.yaml:3: resources: 'gone.yaml' does not exist in the revision; "
        "fix the path or add the file",
    ]
    [broken] = messages(root, "c")
    assert broken.startswith("c/kustomization.yaml:1: invalid kustomization YAML: ")
    assert messages(root, "d") == [
        "d/kustomization.yaml:1: helmCharts: needs kustomize --enable-helm, which "
        "modelsync never runs; render the chart with spec.helm instead"
    ]
    assert messages(root, "e") == [
        "e/kustomization.yaml:1: resources: the directory '../plain' holds no "
        "kustomization.yaml; add one, or list its files"
    ]


def test_kustomize_and_helm_source_together_are_refused_naming_both(tmp_path: Path) -> None:
    root = write(tmp_path, {"app/kustomization.yaml": "resources: []\n"})
    rendered = render(root, "app", HelmSource("chart"), RenderSettings())
    assert [str(e) for e in rendered.errors] == [
        "app/kustomization.yaml:1: spec.path 'app' holds a kustomization and spec.helm is "
        "set: modelsync renders one of them; remove spec.helm, or point spec.path elsewhere"
    ]


def test_helm_source_chart_and_values_must_be_files_of_the_revision(tmp_path: Path) -> None:
    root = write(
        tmp_path / "repo",
        {"chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n", "prod.yaml": "a: 1\n"},
    )
    (root / "chart/templates").mkdir()
    settings = RenderSettings(helm="/nonexistent/helm")

    def errors(helm: dict[str, object]) -> list[str]:
        return [str(e) for e in render(root, "", parse_helm(helm), settings).errors]

    assert errors({"chart": "nochart"}) == [
        "nochart:1: spec.helm.chart: no Chart.yaml in this directory of the revision; point "
        "spec.helm.chart at the chart's directory"
    ]
    assert errors({"chart": "chart", "valuesFiles": ["staging.yaml"]}) == [
        "staging.yaml:1: spec.helm.valuesFiles: 'staging.yaml' does not exist in the "
        "revision; fix spec.helm.valuesFiles or add the file"
    ]
    assert errors({"chart": "chart", "valuesFiles": ["../../etc/passwd"]}) == [
        "../../etc/passwd:1: spec.helm.valuesFiles: '../../etc/passwd' is outside the "
        "revision; name a file of the repository, relative to its root"
    ]
    os.symlink("/etc/passwd", root / "chart/templates/passwd.yaml")
    assert errors({"chart": "chart"}) == [
        "chart/templates/passwd.yaml:1: a symlink in the chart; symlinks are not rendered, "
        "commit the file itself"
    ]
    (root / "chart/templates/passwd.yaml").unlink()
    with pytest.raises(RendererMissingError, match=r"helm v4\.3\.1 is needed"):
        render(root, "", HelmSource("chart"), settings)


def test_helm_source_output_is_split_by_template() -> None:
    output = (
        "---\n# Source: app/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: a}\n---\n# Source: app/templates/b.yaml\napiVersion: v1\n"
        "kind: ConfigMap\nmetadata: {name: b}\n---\n# Source: app/templates/a.yaml\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a2}\n"
    )
    parts = _helm_documents(output, "charts/app", "app")
    assert sorted(parts) == [
        "charts/app/templates/a.yaml (rendered)",
        "charts/app/templates/b.yaml (rendered)",
    ]
    assert parts["charts/app/templates/a.yaml (rendered)"].count("kind: ConfigMap") == 2
