"""Trust boundary: spec.runtime.readinessPath is a path with one placeholder, `{model}`,
never a format string. The API server refuses anything else with the CRD's pattern, so
`/{model:>900000000}` (900 MB in the operator's str.format) is never stored; the
offline check, the CLI and the operator refuse it through git (the bad-commit corpus:
readiness-path-format-spec, readiness-path-braces)."""

from __future__ import annotations

from pathlib import Path

from tests.support.cluster import LocalCluster

MODEL = """\
apiVersion: modelsync.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{name: iris, version: "1", uri: "s3://models/iris/1"}}
  runtime:
    name: custom
    image: registry.example/iris-server:1
    readinessPath: '{path}'
"""


def test_security_readiness_path_kubectl_apply_admits_only_the_model_placeholder(
    local_cluster: LocalCluster, crds: list[str], own_namespace: str, tmp_path: Path
) -> None:
    refused = {
        "format-spec": "/{model:>900000000}",
        "unknown-name": "/v2/models/{x}/ready",
        "open-brace": "/x{",
        "close-brace": "/x}",
        "positional": "/{0}",
    }
    for name, path in refused.items():
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(MODEL.format(name=name, path=path))
        done = local_cluster.run(
            "kubectl", "apply", "-n", own_namespace, "-f", str(manifest), check=False
        )
        assert done.returncode != 0, f"{path!r} was stored: {done.stdout}"
        assert "spec.runtime.readinessPath" in done.stderr, done.stderr
        assert "should match" in done.stderr, done.stderr
    manifest = tmp_path / "good.yaml"
    manifest.write_text(MODEL.format(name="good", path="/v2/models/{model}/ready"))
    done = local_cluster.run("kubectl", "apply", "-n", own_namespace, "-f", str(manifest))
    assert "created" in done.stdout, done.stdout
