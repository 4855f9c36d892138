"""Rendering's first line of defence, with no renderer run: every kustomization is read
and what it names checked before kustomize starts; a chart and its values files
before helm starts; helm's output is split by the template it came from."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from modelsync.api.modelsync import HelmSource, parse_helm
from modelsync.cli import main as cli
from modelsync.gitops.render import (
    RendererMissingError,
    RenderSettings,
    _helm_documents,
    inspect_kustomization,
    render,
)
from testcluster import build
from tests.support.paths import REPO

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
        "base/cm.yaml",
        "overlays/prod/patch.yaml",
        "overlays/prod/data.txt",
    }
    # The kustomizations are written as they were checked, not copied.
    assert {p.relative_to(root).as_posix() for p in inspection.documents} == {
        "base/kustomization.yaml",
        "overlays/prod/kustomization.yaml",
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


# kustomize decodes a kustomization with Go's encoding/json: any case of a field's name
# is that field, and so is `resources` spelled with a long s, U+017F (Go folds it to s).
# Each case: (kustomization of app/, extra files of the repository, remote bases
# allowed?, what is refused).
LONG_S = "re\u017fources"
REMOTE_BASE = "https://github.com/org/repo//base?ref=v1"
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
OUTSIDE = (
    "is outside the revision (only files of this repository are rendered); copy what it "
    "needs into the repository"
)
IS_A_URL = (
    "is a URL: kustomize would fetch it from the operator's pod; modelsync renders only "
    "files of this revision: commit the file"
)
REMOTE_REFUSED = (
    "is a remote base; modelsync renders only files of this revision (the platform "
    "setting --allow-remote-bases would fetch it): vendor it into the repository"
)
HELM = (
    "needs kustomize --enable-helm, which modelsync never runs; render the chart with "
    "spec.helm instead"
)
PLUGINS = (
    "kustomize plugins are not run: a builtin plugin's configuration names files and URLs "
    "of its own (a ConfigMapGenerator's `files: [http://...]`); use the kustomization's "
    "own fields (configMapGenerator, secretGenerator, patches, labels, images, ...)"
)
SPELLINGS: list[tuple[str, str, dict[str, str], bool, list[str]]] = [
    (
        "Resources",
        "Resources:\n  - ../../other-tenant\n",
        {},
        False,
        [f"app/kustomization.yaml:2: Resources: '../../other-tenant' {OUTSIDE}"],
    ),
    (
        "RESOURCES",
        f"RESOURCES:\n  - {REMOTE_BASE}\n",
        {},
        False,
        [f"app/kustomization.yaml:2: RESOURCES: {REMOTE_BASE!r} {REMOTE_REFUSED}"],
    ),
    (
        "ConfigMapGenerator",
        f"ConfigMapGenerator:\n  - name: g\n    files:\n      - meta={METADATA_URL}\n",
        {},
        False,
        [f"app/kustomization.yaml:4: ConfigMapGenerator.files: {METADATA_URL!r} {IS_A_URL}"],
    ),
    (
        "HelmCharts",
        "HelmCharts:\n  - name: x\n    repo: https://charts.example.com\n",
        {},
        False,
        [f"app/kustomization.yaml:1: HelmCharts: {HELM}"],
    ),
    (
        "long-s",
        f"{LONG_S}:\n  - ../../other-tenant\n",
        {},
        False,
        [f"app/kustomization.yaml:2: {LONG_S}: '../../other-tenant' {OUTSIDE}"],
    ),
    (
        "nested-FILES",
        "configMapGenerator:\n  - name: g\n    FILES: [../../../etc/hostname]\n",
        {},
        False,
        [f"app/kustomization.yaml:3: configMapGenerator.FILES: '../../../etc/hostname' {OUTSIDE}"],
    ),
    (
        "http-files-entry",
        f"configMapGenerator:\n  - name: g\n    files: [{METADATA_URL}]\n",
        {},
        True,  # even where remote bases are allowed: a file is not a base
        [f"app/kustomization.yaml:3: configMapGenerator.files: {METADATA_URL!r} {IS_A_URL}"],
    ),
    (
        "inline-generator",
        "generators:\n  - |\n    apiVersion: builtin\n    kind: ConfigMapGenerator\n"
        f"    metadata: {{name: g}}\n    files: [{METADATA_URL}]\n",
        {},
        False,
        [f"app/kustomization.yaml:1: generators: {PLUGINS}"],
    ),
    (
        "inline-generator-flow",
        "generators:\n  - '{apiVersion: builtin, kind: ConfigMapGenerator, metadata: {name: g}, "
        f"files: [{METADATA_URL}]}}'\n",
        {},
        False,
        [f"app/kustomization.yaml:1: generators: {PLUGINS}"],
    ),
    (
        "newline-entry",
        f'resources:\n  - "{REMOTE_BASE}\\n"\n',
        {},
        False,
        [
            f"app/kustomization.yaml:2: resources: {REMOTE_BASE + chr(10)!r} holds a line "
            "break or a control character; a path is one line: fix the entry"
        ],
    ),
    (
        "file-base",
        "resources:\n  - file:///var/cache/modelsync/repos/other-tenant.git//models\n",
        {},
        True,
        [
            "app/kustomization.yaml:2: resources: "
            "'file:///var/cache/modelsync/repos/other-tenant.git//models' is a file:// "
            "base: kustomize would clone it from the operator's own disk (other tenants' "
            "cached repositories); vendor it into the repository"
        ],
    ),
    (
        "dot-dot-escape",
        "Bases:\n  - ../../../../../../tmp\n",
        {},
        False,
        [f"app/kustomization.yaml:2: Bases: '../../../../../../tmp' {OUTSIDE}"],
    ),
    (
        "folded-twice",
        "resources: [cm.yaml]\nResources: [../../other-tenant]\n",
        {"app/cm.yaml": CM},
        False,
        [
            "app/kustomization.yaml:2: Resources: the field resources is given twice (also "
            "as 'resources' at line 1), and kustomize would read only the last: keep one"
        ],
    ),
    (
        "directory-spelled-as-a-repository",
        "resources: [github.com/org/repo]\n",
        {"app/github.com/org/repo/kustomization.yaml": "resources: []\n"},
        False,
        [f"app/kustomization.yaml:1: resources: 'github.com/org/repo' {REMOTE_REFUSED}"],
    ),
]


@pytest.mark.parametrize(
    ("what", "text", "extra", "allow_remote", "expected"),
    SPELLINGS,
    ids=[case[0] for case in SPELLINGS],
)
def test_security_kustomize_what_kustomize_reads_is_what_is_inspected(
    tmp_path: Path,
    what: str,
    text: str,
    extra: dict[str, str],
    allow_remote: bool,
    expected: list[str],
) -> None:
    root = write(tmp_path / "repo", {"app/kustomization.yaml": text, **extra})
    assert messages(root, "app", allow_remote) == expected


@pytest.mark.parametrize("what", [case[0] for case in SPELLINGS if not case[3]])
def test_security_kustomize_validate_refuses_each_spelling_as_the_operator_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    """`modelsync validate` (no kustomize needed: the refusal comes first), naming the
    file as the user reaches it from the repository's top."""
    _, text, extra, _, expected = next(case for case in SPELLINGS if case[0] == what)
    root = write(tmp_path / "repo", {"app/kustomization.yaml": text, **extra})
    (root / ".git").mkdir()
    code = cli.main(["validate", str(root / "app"), "--kustomize", "/nonexistent/kustomize"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert out.splitlines() == [f"{root}/{line}" for line in expected]


def test_security_kustomize_the_copy_holds_the_checked_mapping_not_the_tenants_bytes(
    tmp_path: Path,
) -> None:
    """kustomize is given what was checked, in its own spelling of each field, as JSON:
    nothing of the tenant's YAML (anchors, merge keys, spellings) is left to read again."""
    root = write(
        tmp_path,
        {
            "app/kustomization.yaml": (
                "# a comment\nNamePrefix: p-\nRESOURCES: &files [cm.yaml]\n"
                "configMapGenerator:\n  - NAME: g\n    Files: [k=data.txt]\n"
                "patches:\n  - Path: cm.yaml\n"
            ),
            "app/cm.yaml": CM,
            "app/data.txt": "x",
        },
    )
    inspection = inspect_kustomization(root, root / "app", False)
    assert inspection.errors == []
    written = inspection.documents[root / "app/kustomization.yaml"]
    assert json.loads(written) == {
        "namePrefix": "p-",
        "resources": ["cm.yaml"],
        "configMapGenerator": [{"name": "g", "files": ["k=data.txt"]}],
        "patches": [{"path": "cm.yaml"}],
    }
    assert root / "app/kustomization.yaml" not in inspection.files


def test_security_kustomize_every_field_of_kustomization_is_handled_or_refused() -> None:
    """The allow-list against kustomize's own source (types.Kustomization and the types
    whose fields name files), read from the module the harness builds kustomize from:
    a field that is neither handled nor refused fails here, at the next bump."""
    from modelsync.gitops import kustomization

    source = kustomize_api_source()
    fields = go_json_fields(source, "Kustomization")
    assert fields, "no fields read: the source moved?"
    assert set(kustomization.HANDLED) & set(kustomization.REFUSED) == set()
    unknown = fields - set(kustomization.HANDLED) - set(kustomization.REFUSED)
    assert unknown == set(), f"fields of types.Kustomization neither handled nor refused: {unknown}"
    assert set(kustomization.HANDLED) | set(kustomization.REFUSED) == fields
    for go_type, ours in kustomization.NESTED.items():
        assert go_json_fields(source, go_type) == set(ours), go_type


KUSTOMIZE_MODULE = REPO / "testcluster" / "renderer_modules" / "kustomize"


def kustomize_api_source() -> Path:
    """The directory of sigs.k8s.io/kustomize/api/types at the version the harness builds
    kustomize with (its wrapper module's go.mod), from Go's module cache (downloaded
    through the module proxy if it is not there yet)."""
    found = re.search(
        r"^\s*sigs\.k8s\.io/kustomize/api (v\S+)", (KUSTOMIZE_MODULE / "go.mod").read_text(), re.M
    )
    assert found, "the kustomize wrapper module requires no sigs.k8s.io/kustomize/api"
    env = build.go_environment(build.cache_root())
    env["GOTOOLCHAIN"] = "local"
    done = subprocess.run(
        [build.find_go(), "mod", "download", "-json", f"sigs.k8s.io/kustomize/api@{found[1]}"],
        cwd=KUSTOMIZE_MODULE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return Path(json.loads(done.stdout)["Dir"]) / "types"


_STRUCT = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r"^\s*(\w+)(?:\s+([\w.*\[\]]+))?\s*`[^`]*json:\"([^\",]*)[^`]*`", re.M)


def go_json_fields(types: Path, name: str) -> set[str]:
    """The JSON names encoding/json decodes into the struct `name` of the package at
    `types`: each field's json tag, and the fields of an embedded struct (`json:",inline"`
    has an empty name, so Go promotes its fields) read in turn."""
    bodies = {
        found[1]: found[2]
        for file in sorted(types.glob("*.go"))
        for found in _STRUCT.finditer(file.read_text())
    }
    fields: set[str] = set()
    for field, kind, tag in _FIELD.findall(bodies.get(name, "")):
        if tag == "-":
            continue
        if tag:
            fields.add(tag)
        elif not kind and field in bodies:  # embedded: its fields are promoted
            fields |= go_json_fields(types, field)
    return fields


def test_kustomize_keys_fold_as_go_encoding_json_folds_them() -> None:
    from modelsync.gitops.kustomization import fold

    assert fold("RESOURCES") == fold("Resources") == fold(LONG_S) == "resources"
    assert fold("\u212aind") == "kind"  # the Kelvin sign folds to k
    assert fold("resourcé") != fold("resources")  # no other rune reaches ASCII
    assert fold("İmages") != fold("images")  # not Python's lower(): İ is no I for Go


def test_kustomize_paths_fetched_or_cloned_as_kustomize_decides() -> None:
    from modelsync.gitops.kustomization import cloned, fetched

    assert [fetched(path) for path in ("HTTP://198.18.0.1/x", "https://198.18.0.1/x")] == [
        True,
        True,
    ]
    assert [fetched(path) for path in ("ftp://198.18.0.1/x", "x/http://y")] == [False, False]
    assert cloned("GIT::FILE:///srv/r.git") == "file"
    assert cloned("git@example.com:org/repo") == cloned("GitHub.com/org/repo") == "ssh"
    assert cloned("ssh://example.com/org/repo") == "ssh"
    assert cloned("example.com/org/repo?ref=v1") == ""  # kustomize v5 reads a path here
    assert cloned("/srv/repo.git") == ""


def test_kustomize_unknown_fields_and_fields_of_entries_are_refused(tmp_path: Path) -> None:
    """kustomize refuses them too (DisallowUnknownFields): refused first, by line."""
    root = write(
        tmp_path,
        {
            "app/kustomization.yaml": (
                "resourcez: [cm.yaml]\nconfigMapGenerator:\n  - name: g\n    filez: [a]\n"
                "    Files: [data.txt]\n    FILES: [data.txt]\n1: x\n"
            ),
            "app/data.txt": "x",
        },
    )
    assert messages(root, "app") == [
        "app/kustomization.yaml:1: resourcez: not a field of a kustomization (kustomize "
        "v5.8.2 would refuse it); fix the spelling or remove it",
        "app/kustomization.yaml:4: configMapGenerator: 'filez' is not a field of "
        "configMapGenerator entries; fix the spelling",
        "app/kustomization.yaml:6: configMapGenerator: 'FILES' and 'Files' are both its "
        "files, and kustomize would read only the last: keep one",
        "app/kustomization.yaml:7: 1: not a field of a kustomization (kustomize v5.8.2 "
        "would refuse it); fix the spelling or remove it",
    ]


def test_kustomize_inline_patches_are_data_and_openapi_is_a_file(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "app/kustomization.yaml": (
                "resources: [cm.yaml]\npatchesStrategicMerge:\n  - |\n    apiVersion: v1\n"
                "    kind: ConfigMap\n    metadata: {name: a}\n    data: {a: c}\n"
                '  - \'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": '
                '{"name": "a"}}\'\n  - http://198.18.0.1:9/patch.yaml\n'
                "openapi:\n  path: http://198.18.0.1:9/schema.json\n"
            ),
            "app/cm.yaml": CM,
            "other/kustomization.yaml": "openapi: {path: schema.json}\n",
            "other/schema.json": "{}",
        },
    )
    assert messages(root, "app") == [
        f"app/kustomization.yaml:9: patchesStrategicMerge: 'http://198.18.0.1:9/patch.yaml' "
        f"{IS_A_URL}",
        f"app/kustomization.yaml:11: openapi: 'http://198.18.0.1:9/schema.json' {IS_A_URL}",
    ]
    inspection = inspect_kustomization(root, root / "other", False)
    assert inspection.errors == []
    assert inspection.files == {root / "other/schema.json"}


def test_kustomize_remote_bases_when_allowed_but_never_file_urls_nor_fetched_files(
    tmp_path: Path,
) -> None:
    root = write(
        tmp_path,
        {
            "app/kustomization.yaml": (
                f"resources:\n  - {REMOTE_BASE}\n  - git::file:///srv/repo.git//x\n"
                "  - git@example.com:org/repo.git//base\n"
                "patches:\n  - path: https://198.18.0.1:9/patch.yaml\n"
            )
        },
    )
    assert messages(root, "app", allow_remote=True) == [
        "app/kustomization.yaml:3: resources: 'git::file:///srv/repo.git//x' is a file:// "
        "base: kustomize would clone it from the operator's own disk (other tenants' "
        "cached repositories); vendor it into the repository",
        f"app/kustomization.yaml:6: patches: 'https://198.18.0.1:9/patch.yaml' {IS_A_URL}",
    ]


def test_kustomize_checked_mapping_is_plain_json_kustomize_reads_as_written() -> None:
    """Aliases resolved (merge keys are refused, as the loader refuses them), dates kept
    as the text they are, YAML 1.1's own line breaks escaped in the JSON."""
    from modelsync.gitops.kustomization import check

    found = check(
        "commonLabels: &labels {team: a, since: 2024-01-01}\n"
        "commonAnnotations: *labels\n"
        'namePrefix: "one\\u2028two-"\n'
    )
    assert found.errors == []
    assert found.document == {
        "commonLabels": {"team": "a", "since": "2024-01-01"},
        "commonAnnotations": {"team": "a", "since": "2024-01-01"},
        "namePrefix": "one\u2028two-",
    }
    assert "\u2028" not in found.text()
    assert yaml.safe_load(found.text()) == found.document
    [(line, merged)] = check("a: &a {namePrefix: x}\n<<: *a\n").errors
    assert (line, merged) == (
        2,
        "invalid kustomization YAML: YAML tags are not allowed; write plain data; fix the file",
    )


def test_kustomize_renderer_environment_has_no_network_unless_remote_bases_are_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelsync.gitops import render as rendering

    closed = rendering._environment(tmp_path, RenderSettings())
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert closed[name] == rendering.DEAD_PROXY
    assert closed["NO_PROXY"] == closed["no_proxy"] == ""
    assert (closed["GIT_CONFIG_COUNT"], closed["GIT_CONFIG_KEY_0"]) == ("1", "protocol.allow")
    assert closed["GIT_CONFIG_VALUE_0"] == "never"
    opened = rendering._environment(tmp_path, RenderSettings(allow_remote_bases=True))
    assert "HTTPS_PROXY" not in opened
    allowed = {
        opened[f"GIT_CONFIG_KEY_{i}"]: opened[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(opened["GIT_CONFIG_COUNT"]))
    }
    assert allowed == {
        "protocol.allow": "never",
        "protocol.https.allow": "always",
        "protocol.http.allow": "always",
        "protocol.ssh.allow": "always",
    }
    # What the operator logs at start: where no namespace may be made, it says so.
    monkeypatch.setattr(rendering, "UNSHARE", None)
    said = rendering.isolation(RenderSettings())
    assert said.startswith("renderers run with no network namespace of their own (unshare(1)")
    monkeypatch.setattr(rendering, "UNSHARE", "/nonexistent/unshare")
    assert "no network namespace" in rendering.isolation(RenderSettings())
    assert rendering.isolation(RenderSettings(allow_remote_bases=True)).startswith(
        "remote bases are allowed"
    )
