"""Benchmark rendering (issue 21): a 1,000-model Kustomize overlay and a 1,000-model chart,
rendered as the operator renders them, against reading the same models as plain YAML.

What a sync pays for rendering is the difference: the inspection of every
kustomization, the private copy, the renderer's run and the parse of its output.
A resync of the same revision pays nothing (renders of a snapshot are remembered).
Then `modelsync promote` of one model between two such overlays (its offline part:
three renders, the snapshots of HEAD and of the commit, the commit itself).

    python -m tests.bench.render [--models 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelsync.api.modelsync import HelmSource
from modelsync.gitops import load
from modelsync.gitops.promote import prepare
from modelsync.gitops.render import RenderSettings, render
from testcluster.renderers import ensure_renderers
from tests.support.syncs import model_yaml

CHART_TEMPLATE = """\
{{- range $i := until (int .Values.models) }}
---
apiVersion: modelsync.io/v1alpha1
kind: ModelDeployment
metadata:
  name: model-{{ $i }}
spec:
  model:
    name: model-{{ $i }}
    version: {{ $.Values.version | quote }}
    uri: s3://models/model-{{ $i }}/{{ $.Values.version }}
  runtime:
    name: mlserver
  replicas: {{ $.Values.replicas }}
{{- end }}
"""


def repository(root: Path, models: int) -> None:
    base = root / "base"  # the same models, in a base, as plain/ holds them
    base.mkdir(parents=True)
    names = []
    for i in range(models):
        name = f"model-{i}"
        (base / f"{name}.yaml").write_text(model_yaml(name))
        (root / "plain").mkdir(exist_ok=True)
        (root / "plain" / f"{name}.yaml").write_text(model_yaml(name))
        names.append(f"{name}.yaml")
    (base / "kustomization.yaml").write_text("resources:\n" + "".join(f"  - {n}\n" for n in names))
    overlay = root / "overlays" / "prod"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\nnameSuffix: -prod\npatches:\n"
        "  - target: {kind: ModelDeployment}\n    patch: |-\n"
        "      - {op: replace, path: /spec/replicas, value: 2}\n"
    )
    chart = root / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(f"models: {models}\nversion: '1'\nreplicas: 2\n")
    (chart / "templates" / "models.yaml").write_text(CHART_TEMPLATE)


PIN = """\
apiVersion: modelsync.io/v1alpha1
kind: ModelDeployment
metadata: {{name: model-0}}
spec:
  model: {{version: "{version}", uri: s3://models/model-0/{version}}}
"""


def environments(root: Path) -> None:
    """staging and prod overlays of the base above, each pinning model-0, in git."""
    for env, version in (("staging", "2"), ("prod", "1")):
        overlay = root / "environments" / env  # beside overlays/prod, which stays as it is
        overlay.mkdir(parents=True, exist_ok=True)
        (overlay / "kustomization.yaml").write_text(
            f"resources: [../../base]\nnameSuffix: -{env}\npatches:\n  - path: model-0.yaml\n"
        )
        (overlay / "model-0.yaml").write_text(PIN.format(version=version))
    (root / "environments.yaml").write_text(
        "".join(
            f"---\napiVersion: modelsync.io/v1alpha1\nkind: ModelSync\nmetadata: {{name: {env}}}\n"
            f"spec: {{repo: {{url: https://git.example.com/m.git}}, path: environments/{env}}}\n"
            for env in ("staging", "prod")
        )
    )
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all"],
        ["-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "models"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True)


def timed(rounds: int, step: Callable[[], int]) -> tuple[float, int]:
    seconds = []
    objects = 0
    for _ in range(rounds):
        started = time.perf_counter()
        objects = step()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), objects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    binaries = ensure_renderers()
    settings = RenderSettings(kustomize=str(binaries["kustomize"]), helm=str(binaries["helm"]))
    with tempfile.TemporaryDirectory(prefix="bench-render-") as scratch:
        root = Path(scratch)
        repository(root, args.models)

        def plain() -> int:
            load._PARSED.clear()  # as a new revision: nothing parsed before
            return len(load.load(root, "plain").objects)

        def kustomize() -> int:
            rendered = render(root, "overlays/prod", None, settings)
            assert not rendered.errors, rendered.errors[:3]
            return len(rendered.objects)

        def helm() -> int:
            rendered = render(root, "", HelmSource("chart"), settings, release="bench")
            assert not rendered.errors, rendered.errors[:3]
            return len(rendered.objects)

        def promote() -> int:
            plan = prepare(root, "model-0", "staging", "prod", settings)
            assert plan.commit is not None
            return int(args.models)

        environments(root)
        results = {
            name: timed(args.rounds, step)
            for name, step in (
                ("plain YAML", plain),
                ("kustomize overlay", kustomize),
                ("helm chart", helm),
                ("promote (offline)", promote),
            )
        }
    base_seconds = results["plain YAML"][0]
    print(f"render, {args.models} models, median of {args.rounds}:")
    for name, (seconds, objects) in results.items():
        extra = f"  (+{seconds - base_seconds:.2f}s to a sync)"
        if name == "plain YAML" or name.startswith("promote"):
            extra = ""
        print(f"  {name:18} {seconds:6.2f}s  {objects} objects{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
