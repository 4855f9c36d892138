"""`modelsync validate` and `modelsync diff`: a directory of manifests checked offline,
against the API server, or as a ModelSync's next revision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from modelsync.api.modelsync import HelmSource
from modelsync.cli.common import (
    MS,
    Cluster,
    err,
    fail,
    namespace_option,
    out,
    pass_cluster,
    render_settings,
    renderer_options,
)
from modelsync.gitops import render as rendering


@click.command(
    epilog="Examples:\n\n\b\n  modelsync validate manifests/\n"
    "  modelsync validate models/iris.yaml --output json"
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--server",
    is_flag=True,
    help="also ask the API server (a dry run, per object) of the current kubeconfig",
)
@click.option(
    "--sync",
    "sync_name",
    default=None,
    help="with --server: judge PATH as the content of this ModelSync, as its sync would "
    "(objects it may not take over, its ServiceAccount's rights, a prune it would refuse)",
)
@click.option(
    "--helm-chart",
    default=None,
    metavar="DIR",
    help="render this chart of the repository (as spec.helm.chart: from the root of the git "
    "work tree holding PATH) with helm template, as the operator would",
)
@click.option(
    "--helm-values",
    multiple=True,
    metavar="FILE",
    help="with --helm-chart: a values file, from the repository root (repeat; in order)",
)
@click.option(
    "--helm-release",
    default="release",
    show_default=True,
    help="with --helm-chart: the release name (the ModelSync's name, or spec.helm.releaseName)",
)
@renderer_options
@namespace_option
@pass_cluster
def validate(
    cluster: Cluster,
    path: Path,
    output: str,
    server: bool,
    sync_name: str | None,
    helm_chart: str | None,
    helm_values: tuple[str, ...],
    helm_release: str,
    kustomize_binary: str,
    helm_binary: str,
) -> None:
    """Check every file under PATH offline: YAML, object shape, and ModelDeployments and
    ModelSyncs against the CRDs' schemas and CEL rules. A kustomization at PATH (or a
    chart, --helm-chart) is rendered first, exactly as the operator renders it, offline.
    Exit 1 on any error; 2 when a renderer needed is missing."""

    from modelsync.gitops.check import check_path, server_check, sync_check
    from modelsync.kube.client import Kube

    if not path.exists():
        fail(f"{path} does not exist")
    if sync_name and not server:
        fail("--sync needs --server: it asks the API server")
    settings = render_settings(kustomize_binary, helm_binary)
    helm = HelmSource(helm_chart, values_files=helm_values) if helm_chart else None
    try:
        report = check_path(path, helm=helm, settings=settings, name=helm_release)
        if server and not report.errors and sync_name:
            report.errors += cluster.call(
                "the dry run",
                sync_check,
                path=path,
                sync=cluster.get(MS, sync_name, "ModelSync"),
                kube=Kube(cluster.api.api_client),
                settings=settings,
            )
        elif server and not report.errors:
            report.errors += cluster.call(
                "the dry run",
                server_check,
                path=path,
                kube=Kube(cluster.api.api_client),
                namespace=cluster.namespace,
                settings=settings,
            )
    except rendering.RendererMissingError as missing:
        fail(str(missing))
    if output == "json":
        out.print_json(
            json.dumps(
                {
                    "files": report.files,
                    "objects": report.objects,
                    "errors": [e.as_dict() for e in report.errors],
                }
            )
        )
    else:
        for error in report.errors:
            out.print(str(error), markup=False)
        verdict = "ok" if not report.errors else f"{len(report.errors)} errors"
        err.print(f"{report.files} files, {report.objects} objects: {verdict}", markup=False)
    if report.errors:
        raise SystemExit(1)


@click.command(
    epilog="Examples:\n\n\b\n  modelsync diff models/ --sync prod -n models\n"
    "  modelsync diff models/ --sync prod --output markdown > comment.md"
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--sync", "sync_name", required=True, help="the ModelSync the files go through")
@click.option(
    "--output", type=click.Choice(["text", "markdown"]), default="text", show_default=True
)
@renderer_options
@namespace_option
@pass_cluster
def diff(
    cluster: Cluster,
    path: Path,
    sync_name: str,
    output: str,
    kustomize_binary: str,
    helm_binary: str,
) -> None:
    """What merging the files under PATH would change in the cluster: objects created,
    changed (the fields we manage) and deleted, and a line per model.
    Exit 0 no change, 1 changes, 2 error."""
    from modelsync.gitops.check import diff_path
    from modelsync.kube.client import Kube

    if not path.exists():
        fail(f"{path} does not exist")
    sync = cluster.get(MS, sync_name, "ModelSync")
    try:
        report = cluster.call(
            "the dry run",
            diff_path,
            path=path,
            sync=sync,
            kube=Kube(cluster.api.api_client),
            settings=render_settings(kustomize_binary, helm_binary),
        )
    except rendering.RendererMissingError as missing:
        fail(str(missing))
    if report.errors:
        for error in report.errors:
            err.print(str(error), markup=False)
        raise SystemExit(2)
    if output == "markdown":
        out.print(_markdown(report, sync_name), markup=False)
    else:
        for change in report.changes:
            fields = f" ({', '.join(change.fields)})" if change.fields else ""
            out.print(f"{change.action:7} {change.object}{fields}", markup=False)
        for line in report.models:
            out.print(f"model   {line}", markup=False)
        if not report.changes:
            out.print("no changes", markup=False)
    raise SystemExit(1 if report.changes else 0)


def _markdown(report: Any, sync_name: str) -> str:
    if not report.changes:
        return f"**modelsync** (`{sync_name}`): no changes."
    lines = [
        f"**modelsync** (`{sync_name}`): {len(report.changes)} changes",
        "",
        "| change | object | fields |",
        "|---|---|---|",
    ]
    lines += [f"| {ch.action} | `{ch.object}` | {', '.join(ch.fields)} |" for ch in report.changes]
    if report.models:
        lines += ["", "Models:", *[f"- {line}" for line in report.models]]
    return "\n".join(lines)
