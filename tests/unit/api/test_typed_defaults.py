"""The typed resources (api/modelsync.py, api/modeldeployment.py) and the CRDs agree
on every default: for each `default:` in crds/, the typed value of a spec without the
field equals the typed value of the same spec with the CRD's default written in."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator

import pytest
import yaml

from modelsync.api import modeldeployment, modelsync
from tests.support.paths import REPO

CRDS = REPO / "crds"
# Specs holding every optional object that has defaults inside.
FULL: dict[str, dict[str, object]] = {
    "modelsync.yaml": {"repo": {"url": "https://git.example/models.git", "ref": {"tag": "v1"}}},
    "modeldeployment.yaml": {
        "model": {"name": "iris", "version": "1", "uri": "s3://models/iris"},
        "runtime": {"name": "mlserver"},
        "autoscaling": {"maxReplicas": 3},
        "rollout": {
            "strategy": "Canary",
            "steps": [{"weight": 50}],
            "analysis": {"prometheusURL": "http://198.18.0.1:9090", "query": "q", "threshold": 1},
        },
        "rollback": {"historyLimit": 5},
        "validation": {"samples": [{"name": "one", "path": "/v2/models/iris/ready"}]},
    },
}
PARSE: dict[str, Callable[[dict[str, object]], object]] = {
    "modelsync.yaml": modelsync.parse_spec,
    "modeldeployment.yaml": modeldeployment.parse_spec,
}


def defaults(schema: dict[str, object], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    for name, child in properties.items():
        if isinstance(child, dict):
            if "default" in child:
                yield (*path, name)
            yield from defaults(child, (*path, name))


def cases() -> Iterator[tuple[str, tuple[str, ...], object]]:
    for crd in sorted(FULL):
        document = yaml.safe_load((CRDS / crd).read_text())
        spec = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for path in defaults(spec):
            schema = spec
            for name in path:
                schema = schema["properties"][name]
            yield crd, path, schema["default"]


CASES = list(cases())


def attribute(name: str) -> str:
    """spec field → dataclass attribute: targetCPUUtilization → target_cpu_utilization."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def typed(crd: str, spec: dict[str, object], path: tuple[str, ...]) -> object:
    value = PARSE[crd](spec)
    for name in path:
        value = getattr(value, attribute(name))
    return value


def test_both_crds_have_defaults_to_check() -> None:
    assert {crd for crd, _, _ in CASES} == set(FULL)
    assert len(CASES) >= 20


@pytest.mark.parametrize(
    ("crd", "path", "default"), CASES, ids=[f"{c}:{'.'.join(p)}" for c, p, _ in CASES]
)
def test_the_typed_default_is_the_crds(crd: str, path: tuple[str, ...], default: object) -> None:
    without, written = copy.deepcopy(FULL[crd]), copy.deepcopy(FULL[crd])
    parent_without, parent_written = without, written
    for name in path[:-1]:
        parent_without = parent_without[name]  # type: ignore[assignment]
        parent_written = parent_written[name]  # type: ignore[assignment]
    parent_without.pop(path[-1], None)
    parent_written[path[-1]] = copy.deepcopy(default)
    assert typed(crd, without, path) == typed(crd, written, path)
    if not isinstance(default, dict | list):
        assert typed(crd, without, path) == default
