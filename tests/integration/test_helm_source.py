"""Helm charts as a source: `spec.helm` renders a chart of the revision with `helm
template` (objects applied, pruned and healed like any other, never a Helm release),
a values file per environment, over a real git server and the real local cluster.
And what rendering refuses or stops, named by file, with the last good revision
still serving and the operator's memory bounded."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import CoreV1Api

from modelsync.api import constants as c
from modelsync.api.modelsync import HelmSource
from modelsync.gitops.render import RenderSettings, render
from tests.integration.conftest import RENDER_TIMEOUT_SECONDS
from tests.integration.test_kustomize import create
from tests.support.gitserver import WorkRepo
from tests.support.models import Models, ready_on
from tests.support.paths import REPO
from tests.support.syncs import Syncs

CHART = """\
apiVersion: v2
name: models
version: 0.1.0
"""
MODELS_TEMPLATE = """\
{{- range .Values.models }}
---
apiVersion: modelsync.io/v1alpha1
kind: ModelDeployment
metadata:
  name: {{ $.Release.Name }}-{{ .name }}
  labels:
    environment: {{ $.Values.environment | quote }}
spec:
  model:
    name: {{ .name }}
    version: {{ .version | quote }}
    uri: s3://models/{{ .name }}/{{ .version }}
  runtime:
    name: mlserver
  replicas: {{ $.Values.replicas }}
{{- end }}
"""
SETTINGS_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  environment: {{ .Values.environment | quote }}
"""
DEFAULTS = "environment: none\nreplicas: 1\nmodels: []\n"


def values(environment: str, version: str) -> str:
    return (
        f"environment: {environment}\nmodels:\n  - name: iris\n    version: '{version}'\n"
        f"  - name: fraud\n    version: '1'\n"
    )


def chart_repo(syncs: Syncs) -> WorkRepo:
    repo = syncs.repo("chart")
    repo.write("charts/models/Chart.yaml", CHART)
    repo.write("charts/models/values.yaml", DEFAULTS)
    repo.write("charts/models/templates/models.yaml", MODELS_TEMPLATE)
    repo.write("charts/models/templates/settings.yaml", SETTINGS_TEMPLATE)
    repo.write("environments/staging.yaml", values("staging", "2"))
    repo.write("environments/prod.yaml", values("prod", "1"))
    return repo


def helm(environment: str, **extra: Any) -> dict[str, Any]:
    return {
        "chart": "charts/models",
        "valuesFiles": [f"environments/{environment}.yaml"],
        **extra,
    }


def config_maps(syncs: Syncs) -> set[str]:
    items = CoreV1Api(syncs.cluster.api).list_namespaced_config_map(syncs.namespace).items
    return {item.metadata.name for item in items if item.metadata.name.endswith("-settings")}


def test_helm_source_chart_with_values_per_environment(syncs: Syncs) -> None:
    repo = chart_repo(syncs)
    first = repo.commit("a chart, values per environment")
    create(syncs, "staging", repo, helm=helm("staging"))
    create(syncs, "prod", repo, helm=helm("prod", releaseName="live", values={"replicas": 2}))
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{first}")
    models = syncs.models()
    assert set(models) == {"staging-iris", "staging-fraud", "live-iris", "live-fraud"}
    assert models["staging-iris"]["spec"]["model"]["version"] == "2"
    assert models["staging-iris"]["spec"]["replicas"] == 1
    assert models["live-iris"]["spec"]["model"]["version"] == "1"
    assert models["live-iris"]["spec"]["replicas"] == 2  # inline values win
    assert models["live-iris"]["metadata"]["labels"]["environment"] == "prod"
    assert config_maps(syncs) == {"staging-settings", "live-settings"}
    # Objects we apply, not a Helm release: no release Secret, no Helm labels.
    secrets = CoreV1Api(syncs.cluster.api).list_namespaced_secret(syncs.namespace).items
    assert not [s for s in secrets if s.type == "helm.sh/release.v1"]

    # A value change rolls out in its environment only.
    staging_generation = models["staging-iris"]["metadata"]["generation"]
    repo.write("environments/prod.yaml", values("prod", "2"))
    second = repo.commit("prod: iris 2")
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{second}", syncs.request(env))
    Models(syncs.cluster, syncs.namespace).wait("live-iris", ready_on("2"))
    assert syncs.models()["staging-iris"]["metadata"]["generation"] == staging_generation

    # A template removed from the chart: its objects are pruned.
    uid = {m.metadata.name: m.metadata.uid for m in _settings(syncs)}
    repo.remove("charts/models/templates/settings.yaml")
    third = repo.commit("no settings ConfigMap")
    for env in ("staging", "prod"):
        syncs.wait_applied(env, f"main@sha1:{third}", syncs.request(env))
    assert config_maps(syncs) == set()
    assert uid  # they existed, with these UIDs, and are gone
    assert set(syncs.models()) == {"staging-iris", "staging-fraud", "live-iris", "live-fraud"}


def _settings(syncs: Syncs) -> list[Any]:
    items = CoreV1Api(syncs.cluster.api).list_namespaced_config_map(syncs.namespace).items
    return [item for item in items if item.metadata.name.endswith("-settings")]


# Five billion steps in a few hundred MiB: only the time limit stops it.
LOOPING_TEMPLATE = """\
{{- range until 50000000 }}{{- range until 100 }}{{- end }}{{- end }}
"""
# 200 MiB: fifty ConfigMaps of 4 MiB each.
HUGE_TEMPLATE = """\
{{- range $i := until 50 }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: huge-{{ $i }}
data:
  a: "{{ repeat 4194304 "x" }}"
{{- end }}
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("case", ["template error", "missing values file", "loop", "200 MiB"])
def test_security_helm_source_bad_charts_are_refused_and_serving_stays(
    syncs: Syncs, case: str
) -> None:
    """Refused as a whole, named by file, nothing applied, the last good revision still
    serving; a looping chart stopped at the time limit, a huge one at the size limit,
    and the operator (in this process) grows by no more than the output limit."""
    repo = chart_repo(syncs)
    good = repo.commit("a good chart")
    create(syncs, "prod", repo, helm=helm("prod"))
    syncs.wait_applied("prod", f"main@sha1:{good}")
    before = peak_rss_mib()
    template = "charts/models/templates/extra.yaml"
    if case == "template error":
        repo.write(template, "value: {{ .Values.nothing.here }}\n")
        expected = "charts/models/Chart.yaml:1: helm template: "
        detail = "nil pointer evaluating interface {}.here"
    elif case == "missing values file":
        repo.write("environments/prod.yaml", values("prod", "9"))
        syncs.patch("prod", {"spec": {"helm": {"valuesFiles": ["environments/qa.yaml"]}}})
        expected = (
            "environments/qa.yaml:1: spec.helm.valuesFiles: 'environments/qa.yaml' does not "
            "exist in the revision; fix spec.helm.valuesFiles or add the file"
        )
        detail = ""
    elif case == "loop":
        repo.write(template, LOOPING_TEMPLATE)
        expected = (
            f"charts/models/Chart.yaml:1: helm template: rendering took longer than "
            f"{RENDER_TIMEOUT_SECONDS:g}s and was stopped"
        )
        detail = "--render-timeout-seconds"
    else:
        repo.write(template, HUGE_TEMPLATE)
        expected = "charts/models/Chart.yaml:1: helm template: rendered output is over "
        detail = "--render-max-bytes"
    bad = repo.commit(case)
    ms = syncs.wait_failed("prod", c.REASON_VALIDATION_FAILED, syncs.request("prod"))
    status = ms["status"]
    assert status["lastAttemptedRevision"] == f"main@sha1:{bad}"
    assert status["lastAppliedRevision"] == f"main@sha1:{good}"
    [error] = status["errors"]
    assert error.startswith(expected), error
    assert detail in error, error
    models = syncs.models()
    assert set(models) == {"prod-iris", "prod-fraud"}
    assert models["prod-iris"]["spec"]["model"]["version"] == "1"
    # Output past the limit was never held: the operator's peak grew by less than it.
    assert peak_rss_mib() - before < 64, (before, peak_rss_mib())


def test_security_helm_source_chart_outside_the_revision_is_refused_by_the_api(
    syncs: Syncs,
) -> None:
    """spec.helm.chart and valuesFiles are paths of the repository: the CRD refuses '..'
    and absolute paths before the operator sees them."""
    for bad in ({"chart": "../other"}, {"chart": "c", "valuesFiles": ["/etc/passwd"]}):
        with pytest.raises(kubernetes.client.ApiException) as refused:
            syncs.create("escape", "https://git.example.com/x.git", helm=bad)
        assert refused.value.status == 422
        assert "relative to its root" in str(refused.value.body)


def test_security_helm_source_renderer_memory_is_bounded(
    renderers: dict[str, Path], tmp_path: Path
) -> None:
    """At the default address-space limit (2 GiB, RLIMIT_AS through prlimit) the 200 MiB
    chart cannot even be rendered: helm dies, the revision is refused naming the setting."""
    chart = tmp_path / "repo" / "charts" / "huge"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART)
    (chart / "templates" / "huge.yaml").write_text(HUGE_TEMPLATE)
    settings = RenderSettings(helm=str(renderers["helm"]))
    assert settings.memory_bytes == 2 << 30
    before = peak_rss_mib()
    rendered = render(tmp_path / "repo", "", HelmSource("charts/huge"), settings)
    assert [str(e) for e in rendered.errors] == [
        "charts/huge/Chart.yaml:1: helm template: the renderer ran out of its 2048 MiB of "
        "memory; render less, or the platform raises --render-memory-bytes"
    ]
    assert rendered.objects == []
    assert peak_rss_mib() - before < 64


def test_helm_source_validate_renders_the_chart_offline(
    syncs: Syncs, renderers: dict[str, Path]
) -> None:
    """`modelsync validate --helm-chart` renders as the operator does, with no cluster."""
    repo = chart_repo(syncs)
    repo.commit("a chart")

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "modelsync", "validate", "."),
                *("--helm", str(renderers["helm"]), "--helm-chart", "charts/models"),
                *("--helm-values", "environments/prod.yaml", *extra),
            ],
            cwd=repo.work,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "controller")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = validate("--helm-release", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "objects: ok" in done.stderr
    assert done.stderr.split(",")[1].strip().startswith("3 objects"), done.stderr
    repo.write("charts/models/templates/extra.yaml", "value: {{ .Values.nothing.here }}\n")
    done = validate()
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("charts/models/Chart.yaml:1: helm template: "), done.stdout
    assert "nil pointer evaluating interface {}.here" in done.stdout
