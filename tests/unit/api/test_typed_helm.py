"""spec.helm in the typed ModelSync (api/modelsync.py): every field of the CRD's helm
object is read, and a ModelSync without it has none."""

from __future__ import annotations

import yaml

from modelsync.api.modelsync import HelmSource, parse_spec
from tests.support.paths import CRDS

CRD = CRDS / "modelsync.yaml"
REPO = {"url": "https://git.example/models.git"}


def test_every_helm_field_of_the_crd_is_typed() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = schema["properties"]["spec"]["properties"]["helm"]["properties"]
    assert set(fields) == {"chart", "releaseName", "valuesFiles", "values"}
    helm = {
        "chart": "charts/models",
        "releaseName": "live",
        "valuesFiles": ["prod.yaml", "gpu.yaml"],
        "values": {"replicas": 2, "model": {"version": "1.2"}},
    }
    assert parse_spec({"repo": REPO, "helm": helm}).helm == HelmSource(
        chart="charts/models",
        release_name="live",
        values_files=("prod.yaml", "gpu.yaml"),
        values={"replicas": 2, "model": {"version": "1.2"}},
    )


def test_without_helm_there_is_no_chart_to_render() -> None:
    assert parse_spec({"repo": REPO}).helm is None
    assert parse_spec({"repo": REPO, "helm": {"chart": "c"}}).helm == HelmSource("c")
