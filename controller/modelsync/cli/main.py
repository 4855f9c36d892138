"""The `modelsync` command line, also installed as the kubectl plugin `kubectl-modelsync`.

Exit codes: 0 success; 1 the thing asked about is not well (a failed sync, a
rollback refused); 2 the command could not run (bad usage, no kubeconfig, an
unreachable cluster, a missing object or path).
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from modelsync import __version__
from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.api.modelsync import HelmSource
from modelsync.gitops import render as rendering
from modelsync.runtime.settings import (
    IMAGE_PULL_POLICY_CHOICES,
    MODEL_POD_SECURITY_CHOICES,
    OperatorSettings,
    parse_runtime_images,
)
from modelsync.telemetry import logs

MD = {"group": c.GROUP, "version": c.VERSION, "plural": c.MODELDEPLOYMENT_PLURAL}
MS = {"group": c.GROUP, "version": c.VERSION, "plural": c.MODELSYNC_PLURAL}

# Off a terminal (a pipe, CI, a bot) lines are not wrapped and carry no colour.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
err = Console(
    stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 400
)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition `kind` of an object, for the tables (Any: they print what is there)."""
    return conditions.of(obj, kind)


def program_name(argv0: str) -> str:
    """Name the program as the user called it: `kubectl modelsync` when run as a plugin."""
    base = os.path.basename(argv0)
    if base.startswith("kubectl-"):
        return "kubectl " + base.removeprefix("kubectl-")
    if base in {"__main__.py", ""}:
        return "modelsync"
    return base


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise SystemExit(code)


class Cluster:
    """The Kubernetes API, reached lazily, with one clear line when it cannot be."""

    def __init__(self, kubeconfig: str | None, namespace: str | None) -> None:
        self.kubeconfig = kubeconfig
        self._namespace = namespace
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            import kubernetes  # the client loads only for commands that need it

            from modelsync.kube.client import api_client

            try:
                client = api_client(self.kubeconfig)
            except (kubernetes.config.ConfigException, OSError) as error:
                fail(f"no usable kubeconfig ({error}); set KUBECONFIG or pass --kubeconfig")
            self._api = kubernetes.client.CustomObjectsApi(client)
        return self._api

    @property
    def namespace(self) -> str:
        if self._namespace:
            return self._namespace
        try:
            import kubernetes

            _, context = kubernetes.config.list_kube_config_contexts(config_file=self.kubeconfig)
            return str(context.get("context", {}).get("namespace") or "default")
        except Exception:  # no kubeconfig: `api` will say so
            return "default"

    def call(self, what: str, function: Any, **kwargs: Any) -> Any:
        """An API call; an unreachable cluster or a missing object ends the command."""
        import kubernetes
        import urllib3

        try:
            return function(**kwargs)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                fail(f"{what} not found in namespace {kwargs.get('namespace', '')}")
            fail(f"{what}: the API server answered {error.status} {error.reason}")
        except (urllib3.exceptions.HTTPError, OSError) as error:
            fail(f"cannot reach the cluster ({error.__class__.__name__}); check KUBECONFIG")

    def get(self, kind: dict[str, str], name: str, label: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call(
            f"{label} {name!r}",
            self.api.get_namespaced_custom_object,
            name=name,
            namespace=self.namespace,
            **kind,
        )
        return found

    def list(self, kind: dict[str, str], all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            found = self.call("listing", self.api.list_cluster_custom_object, **kind)
        else:
            found = self.call(
                "listing", self.api.list_namespaced_custom_object, namespace=self.namespace, **kind
            )
        return list(found.get("items") or [])

    def patch(self, kind: dict[str, str], name: str, label: str, body: dict[str, Any]) -> None:
        self.call(
            f"{label} {name!r}",
            self.api.patch_namespaced_custom_object,
            name=name,
            namespace=self.namespace,
            body=body,
            **kind,
        )


def ready_cell(obj: dict[str, Any]) -> str:
    status = condition(obj, c.READY).get("status", "Unknown")
    colour = {"True": "green", "False": "red"}.get(status, "yellow")
    return f"[{colour}]{status}[/{colour}]"


pass_cluster = click.make_pass_decorator(Cluster)


def _set_namespace(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_object(Cluster)._namespace = value  # type: ignore[union-attr]


# kubectl users write -n after the command: accept it there as well as before.
namespace_option = click.option(
    "-n",
    "--namespace",
    expose_value=False,
    callback=_set_namespace,
    help="namespace (default: the context's)",
)


def _renderers(function: Any) -> Any:
    """--kustomize and --helm: the binaries that render a kustomization or a chart."""
    function = click.option(
        "--helm",
        "helm_binary",
        envvar="MODELSYNC_HELM",
        default="helm",
        show_default=True,
        metavar="PATH",
        help=f"helm {rendering.HELM_VERSION} binary that renders charts (spec.helm)",
    )(function)
    return click.option(
        "--kustomize",
        "kustomize_binary",
        envvar="MODELSYNC_KUSTOMIZE",
        default="kustomize",
        show_default=True,
        metavar="PATH",
        help=f"kustomize {rendering.KUSTOMIZE_VERSION} binary that renders kustomizations",
    )(function)


def _render_settings(kustomize_binary: str, helm_binary: str) -> rendering.RenderSettings:
    return rendering.RenderSettings(kustomize=kustomize_binary, helm=helm_binary)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Examples:\n\n\b\n  modelsync status -A\n  kubectl modelsync history iris -n models",
)
@click.version_option(__version__, prog_name="modelsync", message="%(prog)s %(version)s")
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
)
@click.option("-n", "--namespace", default=None, help="namespace (default: the context's)")
@click.pass_context
def main_group(ctx: click.Context, kubeconfig: str | None, namespace: str | None) -> None:
    """GitOps for machine-learning model serving on Kubernetes."""
    if kubeconfig and os.pathsep in kubeconfig:
        kubeconfig = kubeconfig.split(os.pathsep)[0]
    ctx.obj = Cluster(kubeconfig, namespace)


@main_group.command(
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
@_renderers
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
    import json

    from modelsync.gitops.check import check_path, server_check, sync_check
    from modelsync.kube.client import Kube

    if not path.exists():
        fail(f"{path} does not exist")
    if sync_name and not server:
        fail("--sync needs --server: it asks the API server")
    settings = _render_settings(kustomize_binary, helm_binary)
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


@main_group.command(
    epilog="Examples:\n\n\b\n  modelsync diff models/ --sync prod -n models\n"
    "  modelsync diff models/ --sync prod --output markdown > comment.md"
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--sync", "sync_name", required=True, help="the ModelSync the files go through")
@click.option(
    "--output", type=click.Choice(["text", "markdown"]), default="text", show_default=True
)
@_renderers
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
            settings=_render_settings(kustomize_binary, helm_binary),
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


@main_group.command(epilog="Example:\n\n\b\n  modelsync status -A")
@click.option("-A", "--all-namespaces", is_flag=True, help="every namespace")
@namespace_option
@pass_cluster
def status(cluster: Cluster, all_namespaces: bool) -> None:
    """ModelSyncs and ModelDeployments: revision, readiness, message."""
    syncs = cluster.list(MS, all_namespaces)
    models = cluster.list(MD, all_namespaces)
    table = Table(title="ModelSyncs", title_justify="left", expand=False)
    for column in ("NAMESPACE", "NAME", "REVISION", "READY", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for ms in syncs:
        meta, state = ms["metadata"], ms.get("status") or {}
        table.add_row(
            meta["namespace"],
            meta["name"],
            state.get("lastAppliedRevision", ""),
            ready_cell(ms),
            condition(ms, c.READY).get("message", ""),
        )
    out.print(table)
    # The detail condition messages leave out (they stay short for `kubectl get`).
    for ms in syncs:
        meta, state = ms["metadata"], ms.get("status") or {}
        for title, lines in (
            ("errors", state.get("errors") or []),
            ("models not Ready", state.get("modelsNotReady") or []),
        ):
            if lines:
                out.print(f"{meta['namespace']}/{meta['name']} {title}:", markup=False)
                for line in lines:
                    out.print(f"  {line}", markup=False)
    table = Table(title="ModelDeployments", title_justify="left", expand=False)
    for column in ("NAMESPACE", "NAME", "MODEL", "VERSION", "READY", "REVISION", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for md in models:
        meta, state = md["metadata"], md.get("status") or {}
        rolled = condition(md, c.ROLLED_BACK)
        message = (
            rolled.get("message")
            if rolled.get("status") == "True"
            else condition(md, c.READY).get("message", "")
        )
        table.add_row(
            meta["namespace"],
            meta["name"],
            md["spec"]["model"]["name"],
            state.get("modelVersion", md["spec"]["model"]["version"]),
            ready_cell(md),
            state.get("currentRevision", ""),
            message or "",
        )
    out.print(table)


@main_group.command(epilog="Example:\n\n\b\n  modelsync history iris -n models")
@click.argument("model")
@namespace_option
@pass_cluster
def history(cluster: Cluster, model: str) -> None:
    """The rollout history of MODEL: revisions, versions and results, newest first."""
    md = cluster.get(MD, model, "ModelDeployment")
    table = Table(title=f"ModelDeployment {cluster.namespace}/{model}", title_justify="left")
    for column in ("TIME", "REVISION", "VERSION", "SPEC", "RESULT", "MESSAGE"):
        table.add_column(column, overflow="fold")
    colours = {
        c.HISTORY_SUCCEEDED: "green",
        c.HISTORY_FAILED: "red",
        c.HISTORY_ROLLED_BACK: "yellow",
    }
    for entry in (md.get("status") or {}).get("history") or []:
        result = entry.get("result", "")
        colour = colours.get(result, "white")
        table.add_row(
            entry.get("time", ""),
            entry.get("revision", ""),
            entry.get("modelVersion", ""),
            entry.get("specHash", ""),
            f"[{colour}]{result}[/{colour}]",
            entry.get("message", ""),
        )
    out.print(table)


@main_group.command(
    "test", epilog="Examples:\n\n\b\n  modelsync test iris -n models\n  modelsync test iris -q"
)
@click.argument("model")
@click.option("-q", "--quiet", is_flag=True, help="print only the verdict")
@namespace_option
@pass_cluster
def model_test(cluster: Cluster, model: str, quiet: bool) -> None:
    """Send MODEL's spec.validation samples to the live model, through the API server's
    proxy to its Service, and judge the answers as the inference gate does. Exit 0
    when enough samples pass, 1 when not, 2 when the model cannot be asked."""
    from rich.markup import escape

    from modelsync.api.modeldeployment import parse_spec
    from modelsync.serving import validation

    md = cluster.get(MD, model, "ModelDeployment")
    wanted = parse_spec(md.get("spec") or {}).validation
    if wanted is None:
        fail(f"ModelDeployment {cluster.namespace}/{model} has no spec.validation to test with")
    answers = [
        _proxy_sample(cluster, model, sample, wanted.timeout_seconds) for sample in wanted.samples
    ]
    for sample, answer in zip(wanted.samples, answers, strict=True):
        failed = validation.judge(sample, answer)
        if not quiet:
            took = f"HTTP {answer.status} in {answer.seconds * 1000:.0f} ms"
            line = (
                f"[red]FAIL[/red] {escape(failed)}"
                if failed
                else f"[green]PASS[/green] sample {escape(sample.name)} ({took})"
            )
            out.print(line, markup=True)
    verdict = validation.verdict(wanted, answers)
    if verdict.result is validation.Result.UNREACHABLE:
        fail(f"{cluster.namespace}/{model}: {verdict.message}")
    passed = verdict.result is validation.Result.PASSED
    out.print(
        f"{cluster.namespace}/{model}: {'passed' if passed else 'failed'}: {verdict.message}",
        markup=False,
    )
    if not passed:
        raise SystemExit(1)


def _proxy_sample(cluster: Cluster, model: str, sample: Any, timeout: int) -> Any:
    """One sample through the API server's service proxy: its Answer (status, body,
    seconds). A cluster that cannot be reached ends the command (exit 2)."""
    import json

    import urllib3

    from modelsync.serving.gate import BODY_LIMIT
    from modelsync.serving.render import PORT_NAME
    from modelsync.serving.validation import Answer

    client = cluster.api.api_client
    path = f"/api/v1/namespaces/{cluster.namespace}/services/{model}:{PORT_NAME}/proxy{sample.path}"
    headers = {"Accept": "application/json"}
    body = None
    if sample.body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(sample.body)
    started = time.monotonic()
    try:
        # The REST client's own pool (its TLS settings), read with a bound: the generated
        # methods would read a whole answer of any size.
        response = client.rest_client.pool_manager.request(
            sample.method,
            client.configuration.host + path,
            headers={**headers, **_auth_headers(client)},
            body=body,
            preload_content=False,
            timeout=urllib3.Timeout(total=timeout),
            redirect=False,
        )
        data = response.read(BODY_LIMIT + 1)
        response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError) as error:
        if isinstance(error, urllib3.exceptions.TimeoutError):
            return Answer(error=f"no whole answer within {timeout}s")
        fail(f"cannot reach the cluster ({error.__class__.__name__}); check KUBECONFIG")
    if len(data) > BODY_LIMIT:
        return Answer(error=f"answer longer than the {BODY_LIMIT} bytes read")
    return Answer(status=int(response.status), body=data, seconds=time.monotonic() - started)


def _auth_headers(client: Any) -> dict[str, str]:
    """The kubeconfig's token, as the generated API methods send it (certificates go by
    the REST client's own TLS settings)."""
    headers: dict[str, str] = {}
    for setting in client.configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[setting["key"]] = setting["value"]
    return headers


@main_group.command(epilog="Example:\n\n\b\n  modelsync sync prod --wait --timeout 120")
@click.argument("name")
@click.option(
    "--wait",
    is_flag=True,
    help="wait for the sync and its models to be Ready; exit 0 only if they are",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="seconds to wait")
@namespace_option
@pass_cluster
def sync(cluster: Cluster, name: str, wait: bool, timeout: float) -> None:
    """Ask the operator to sync the ModelSync NAME now."""
    cluster.get(MS, name, "ModelSync")
    token = datetime.datetime.now(datetime.UTC).isoformat()
    cluster.patch(
        MS,
        name,
        "ModelSync",
        {"metadata": {"annotations": {c.ANNOTATION_RECONCILE_REQUESTED: token}}},
    )
    if not wait:
        out.print(f"sync of {cluster.namespace}/{name} requested")
        return
    deadline = time.monotonic() + timeout
    with err.status(f"syncing {cluster.namespace}/{name}"):
        while True:
            ms = cluster.get(MS, name, "ModelSync")
            ready = condition(ms, c.READY)
            handled = (ms.get("status") or {}).get("lastHandledReconcileAt") == token
            # Applied, its models still coming up: wait for them too (Flux's `wait`).
            if handled and ready.get("reason") != c.REASON_MODELS_NOT_READY:
                break
            if time.monotonic() > deadline:
                if handled:
                    healthy = condition(ms, c.HEALTHY).get("message", "")
                    fail(
                        f"{cluster.namespace}/{name} applied, but its models were not Ready "
                        f"within {timeout:.0f}s: {healthy}"
                    )
                fail(f"the operator did not handle the sync within {timeout:.0f}s; is it running?")
            time.sleep(0.5)
    message = ready.get("message", "")
    if ready.get("status") == "True":
        out.print(f"[green]synced[/green] {cluster.namespace}/{name}: {message}")
        return
    err.print(
        f"[red]sync failed[/red] {cluster.namespace}/{name} ({ready.get('reason')}): {message}"
    )
    raise SystemExit(1)


def _set_suspend(cluster: Cluster, name: str, suspend: bool) -> None:
    cluster.get(MS, name, "ModelSync")
    cluster.patch(MS, name, "ModelSync", {"spec": {"suspend": suspend}})
    out.print(f"{cluster.namespace}/{name} {'suspended' if suspend else 'resumed'}")


@main_group.command(epilog="Example:\n\n\b\n  modelsync suspend prod")
@click.argument("name")
@namespace_option
@pass_cluster
def suspend(cluster: Cluster, name: str) -> None:
    """Stop fetching, applying and pruning for the ModelSync NAME."""
    _set_suspend(cluster, name, True)


@main_group.command(epilog="Example:\n\n\b\n  modelsync resume prod")
@click.argument("name")
@namespace_option
@pass_cluster
def resume(cluster: Cluster, name: str) -> None:
    """Resume the ModelSync NAME; it takes the newest commit."""
    _set_suspend(cluster, name, False)


@main_group.command(
    epilog="Example:\n\n\b\n  modelsync rollback iris --to main@sha1:0123abc... "
    "--repo-dir . --branch rollback/iris --push"
)
@click.argument("model")
@click.option(
    "--to", "to", required=True, help="the revision (sha, main@sha1:<sha>, tag) to restore"
)
@click.option(
    "--repo-dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="a clone of the GitOps repository",
)
@click.option("--path", default="", help="where the models live in the repository")
@click.option("--branch", default=None, help="commit on this new branch (default: current)")
@click.option("--push", is_flag=True, help="push the commit to origin")
def rollback(
    model: str, to: str, repo_dir: Path, path: str, branch: str | None, push: bool
) -> None:
    """Write the git commit that restores MODEL's file as it was at a revision."""
    import git

    from modelsync.gitops.writeback import RollbackError, restore_model

    if not repo_dir.exists():
        fail(f"{repo_dir} does not exist")
    try:
        repo = git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        fail(f"{repo_dir} is not a git repository")
    if repo.is_dirty(untracked_files=False):
        fail(f"{repo_dir} has uncommitted changes; commit or stash them first")
    try:
        restored = restore_model(repo_dir, model, to, path=path, branch=branch)
    except RollbackError as error:
        fail(str(error))
    out.print(f"committed {restored.sha[:12]}: {restored.file} restored from {to}")
    if push:
        target = restored.branch or repo.active_branch.name
        try:
            repo.git.push("--end-of-options", "origin", f"{restored.sha}:refs/heads/{target}")
        except git.GitCommandError as error:
            fail(f"push to origin failed: {str(error.stderr).strip()}", code=1)
        out.print(f"pushed to origin {target}")


@main_group.command(
    epilog="Example:\n\n\b\n  modelsync promote iris --from staging --to prod --repo-dir . --push"
)
@click.argument("model")
@click.option("--from", "source", required=True, help="the environment that serves the model")
@click.option("--to", "target", required=True, help="the environment to give it to")
@click.option(
    "--repo-dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="a clone of the GitOps repository (its HEAD is rendered)",
)
@click.option(
    "--environments",
    "environments_file",
    default=None,
    metavar="FILE",
    help="the ModelSyncs, one per environment, from the repository root "
    "(default: environments.yaml, else manifests/environments.yaml)",
)
@click.option("--branch", default=None, help="default: modelsync/promote/<model>-<version>")
@click.option(
    "--force", is_flag=True, help="promote even when the source does not serve it healthily"
)
@click.option("--push", is_flag=True, help="push the branch to origin")
@_renderers
@namespace_option
@pass_cluster
def promote(
    cluster: Cluster,
    model: str,
    source: str,
    target: str,
    repo_dir: Path,
    environments_file: str | None,
    branch: str | None,
    force: bool,
    push: bool,
    kustomize_binary: str,
    helm_binary: str,
) -> None:
    """Commit, on a branch of its own, the source environment's spec.model of MODEL
    (version, uri, format) into the patch of the target's overlay that pins it, checked
    by rendering the target as the operator does. Refused (exit 1) unless the source
    serves that version healthily, or --force."""
    from modelsync.gitops.promote import finish, prepare
    from modelsync.gitops.promotion import PromotionError, describe, unhealthy

    if not repo_dir.exists():
        fail(f"{repo_dir} does not exist")
    try:
        plan = prepare(
            repo_dir,
            model,
            source,
            target,
            _render_settings(kustomize_binary, helm_binary),
            environments_file=environments_file,
            branch=branch,
            default_namespace=cluster.namespace,
        )
        if plan.commit is None:
            out.print(
                f"{plan.target.name} already has {model} {describe(plan.fields)}: "
                "nothing to promote",
                markup=False,
            )
            return
        if not force:
            live = _live_model(cluster, plan.name, plan.namespace)
            problems = unhealthy(live, plan.fields, plan.source.sync)
            if problems:
                fail(
                    f"{plan.source.name} does not serve {model} {plan.fields['version']} "
                    f"healthily: ModelDeployment {plan.namespace}/{plan.name}: "
                    f"{'; '.join(problems)}. Nothing committed; wait for it "
                    f"(modelsync status -n {plan.namespace}), or --force",
                    code=1,
                )
        finish(repo_dir, plan)
    except rendering.RendererMissingError as missing:
        fail(str(missing))
    except PromotionError as error:
        fail(str(error), code=error.code)
    out.print(
        f"committed {plan.commit[:12]} on {plan.branch}: {plan.file}: {model} "
        f"{describe(plan.before)} -> {describe(plan.fields)} (as {plan.source.name})",
        markup=False,
    )
    if push:
        import git

        try:
            git.Repo(repo_dir).git.push(
                "--end-of-options", "origin", f"{plan.commit}:refs/heads/{plan.branch}"
            )
        except git.GitCommandError as error:
            fail(f"push to origin failed: {str(error.stderr).strip()}", code=1)
        out.print(f"pushed to origin {plan.branch}")


def _live_model(cluster: Cluster, name: str, namespace: str) -> dict[str, Any] | None:
    """The ModelDeployment as it runs, or None when there is none."""
    import kubernetes

    def get() -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = cluster.api.get_namespaced_custom_object(
                name=name, namespace=namespace, **MD
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    live: dict[str, Any] | None = cluster.call(f"ModelDeployment {name!r}", get)
    return live


@main_group.command(
    epilog="Examples:\n\n\b\n  modelsync run\n  modelsync run -n team-a -n team-b --workers 8"
)
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="a namespace to watch (repeat for more; patterns such as team-* or *,!kube-* work; "
    "default: all namespaces)",
)
@click.option(
    "--workers",
    type=int,
    default=OperatorSettings.workers,
    show_default=True,
    help="ModelDeployments and ModelSyncs reconciled at once",
)
@click.option(
    "--resync-seconds",
    type=float,
    default=OperatorSettings.resync_seconds,
    show_default=True,
    help="full resync period of the ModelDeployments",
)
@click.option(
    "--quiet-rollout-seconds",
    type=click.FloatRange(min=0),
    default=OperatorSettings.quiet_rollout_seconds,
    show_default=True,
    help="a rollout going as planned is written to status when it ends, or after this long",
)
@click.option(
    "--http-port",
    type=int,
    default=OperatorSettings.http_port,
    show_default=True,
    help="port of /metrics, /healthz, /readyz and /hooks/*; 0 turns it off",
)
@click.option(
    "--git-cache-dir",
    default=None,
    help="where repositories and snapshots are kept (default: under the temp dir)",
)
@click.option(
    "--max-revision-bytes",
    type=click.IntRange(min=1),
    default=OperatorSettings.max_revision_bytes,
    show_default=True,
    help="bytes one revision's files may hold in all (and so any one file); "
    "a larger revision is refused, naming its files",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="INFO",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, for log collectors",
)
@click.option(
    "--leader-elect",
    is_flag=True,
    help="take a Lease before acting, so several replicas never act at once",
)
@click.option(
    "--lease-namespace",
    envvar="POD_NAMESPACE",
    default="default",
    show_default=True,
    help="namespace of the Lease (default: $POD_NAMESPACE)",
)
@click.option(
    "--lease-seconds",
    type=int,
    default=OperatorSettings.lease_seconds,
    show_default=True,
    help="how long an unrenewed Lease stays its holder's",
)
@click.option(
    "--shard",
    default="",
    callback=lambda _ctx, _param, value: _shard_name(value),
    help="reconcile only ModelSyncs labelled modelsync.io/shard=NAME (and what they apply); "
    "without it, only unlabelled ones",
)
@click.option(
    "--kube-qps",
    type=click.FloatRange(min=0.1),
    default=OperatorSettings.kube_qps,
    show_default=True,
    help="Kubernetes API requests a second, at most (client-side rate limit)",
)
@click.option(
    "--kube-burst",
    type=click.IntRange(min=1),
    default=OperatorSettings.kube_burst,
    show_default=True,
    help="requests allowed at once above --kube-qps",
)
@click.option(
    "--analysis-endpoint",
    "analysis_endpoints",
    multiple=True,
    callback=lambda _ctx, _param, values: _analysis_endpoints(values),
    help="a Prometheus endpoint (scheme://host:port) canary analysis may query (repeat for "
    "more; default: none, every analysis URL is refused)",
)
@click.option(
    "--commit-status-api-url",
    "commit_status_api_urls",
    multiple=True,
    callback=lambda _ctx, _param, values: _commit_status_api_urls(values),
    help="a git host API (scheme://host:port) that a ModelSync's spec.notify.apiURL may name "
    "besides its repository's own host (repeat for more; default: none)",
)
@click.option(
    "--notification-endpoint",
    "notification_endpoints",
    multiple=True,
    callback=lambda _ctx, _param, values: _notification_endpoints(values),
    help="a receiver (scheme://host:port) that spec.notify.receivers may post notifications "
    "to (repeat for more; default: none, every receiver is refused)",
)
@click.option(
    "--default-service-account",
    default=OperatorSettings.default_service_account,
    metavar="NAME",
    help="ServiceAccount (in each ModelSync's namespace) that applies git content when the "
    "ModelSync names none",
)
@click.option(
    "--apply-as-operator",
    is_flag=True,
    help="apply the content of a ModelSync with no account as the operator itself "
    "(single-team clusters only)",
)
@click.option(
    "--allow-other-namespaces",
    multiple=True,
    metavar="PATTERN",
    help="namespaces whose ModelSyncs may write into other namespaces (repeat; patterns)",
)
@click.option(
    "--allow-cluster-scoped",
    multiple=True,
    metavar="PATTERN",
    help="namespaces whose ModelSyncs may write cluster-scoped objects (repeat; patterns)",
)
@click.option(
    "--allow-remote-clusters",
    multiple=True,
    metavar="PATTERN",
    help="namespaces whose ModelSyncs may apply to another cluster (spec.kubeConfig; "
    "repeat; patterns)",
)
@click.option(
    "--remote-cluster-server",
    "remote_cluster_servers",
    multiple=True,
    callback=lambda _ctx, _param, values: _remote_cluster_servers(values),
    help="an API server (https://host:port) a spec.kubeConfig may name (repeat for more; "
    "default: none)",
)
@click.option(
    "--controllers",
    default=",".join(OperatorSettings.controllers),
    show_default=True,
    callback=lambda _ctx, _param, value: _controllers(value),
    help="the controllers to run, comma-separated: gitops (ModelSyncs), serving "
    "(ModelDeployments); a remote cluster's operator runs serving",
)
@click.option(
    "--model-pod-security",
    type=click.Choice(MODEL_POD_SECURITY_CHOICES),
    default=OperatorSettings.model_pod_security,
    show_default=True,
    help="restricted: model pods non-root on a read-only root filesystem; image: as built",
)
@click.option(
    "--runtime-image",
    "runtime_image_pairs",
    multiple=True,
    metavar="RUNTIME=IMAGE",
    help="the image of a runtime in this installation (repeat for more), "
    "e.g. mlserver=mirror.local/mlserver:1.7.1; default: runtimes.py's",
)
@click.option(
    "--storage-initializer-image",
    default=OperatorSettings.storage_initializer_image,
    show_default=True,
    help="image of the init container that downloads s3://, gs:// and https:// models",
)
@click.option(
    "--image-pull-policy",
    type=click.Choice(IMAGE_PULL_POLICY_CHOICES),
    default=OperatorSettings.image_pull_policy,
    help="imagePullPolicy of model pods' containers (default: none, Kubernetes decides)",
)
@click.option(
    c.FLAG_ALLOW_FILE_URLS,
    "allow_file_urls",
    is_flag=True,
    default=OperatorSettings.allow_file_urls,
    help="let ModelSyncs name file:// repositories (any repository on the operator's disk: "
    "for tests and demos, not for tenants)",
)
@click.option(
    "--kustomize",
    default=OperatorSettings.kustomize,
    show_default=True,
    metavar="PATH",
    help=f"kustomize {rendering.KUSTOMIZE_VERSION} binary (path, or name on PATH)",
)
@click.option(
    "--helm",
    default=OperatorSettings.helm,
    show_default=True,
    metavar="PATH",
    help=f"helm {rendering.HELM_VERSION} binary that renders spec.helm charts",
)
@click.option(
    "--allow-remote-bases",
    is_flag=True,
    default=OperatorSettings.allow_remote_bases,
    help="let kustomizations fetch remote bases (off: refused before kustomize runs)",
)
@click.option(
    "--render-timeout-seconds",
    type=click.FloatRange(min=0.1),
    default=OperatorSettings.render_timeout_seconds,
    show_default=True,
    help="how long one kustomize build or helm template may run",
)
@click.option(
    "--render-max-bytes",
    type=click.IntRange(min=1),
    default=OperatorSettings.render_max_bytes,
    show_default=True,
    help="bytes of output one render may write before it is killed",
)
@click.option(
    "--render-memory-bytes",
    type=click.IntRange(min=64 << 20),
    default=OperatorSettings.render_memory_bytes,
    show_default=True,
    help="address space (RLIMIT_AS) of a renderer; GOMEMLIMIT is half of it",
)
@click.option(
    "--render-memory-total-bytes",
    type=click.IntRange(min=0),
    default=OperatorSettings.render_memory_total_bytes,
    show_default=True,
    help="memory all renders at once may take; 0: no bound",
)
@click.option(
    "--kubeconfig",
    "run_kubeconfig",
    default=None,
    help="kubeconfig file (as the global option; default: in-cluster, else $KUBECONFIG)",
)
@pass_cluster
def run(
    cluster: Cluster,
    namespaces: tuple[str, ...],
    workers: int,
    resync_seconds: float,
    quiet_rollout_seconds: float,
    http_port: int,
    git_cache_dir: str | None,
    max_revision_bytes: int,
    log_level: str,
    log_format: str,
    leader_elect: bool,
    lease_namespace: str,
    lease_seconds: int,
    shard: str,
    kube_qps: float,
    kube_burst: int,
    analysis_endpoints: tuple[str, ...],
    commit_status_api_urls: tuple[str, ...],
    notification_endpoints: tuple[str, ...],
    default_service_account: str,
    apply_as_operator: bool,
    allow_other_namespaces: tuple[str, ...],
    allow_cluster_scoped: tuple[str, ...],
    allow_remote_clusters: tuple[str, ...],
    remote_cluster_servers: tuple[str, ...],
    controllers: tuple[str, ...],
    model_pod_security: str,
    runtime_image_pairs: tuple[str, ...],
    storage_initializer_image: str,
    image_pull_policy: str,
    allow_file_urls: bool,
    kustomize: str,
    helm: str,
    allow_remote_bases: bool,
    render_timeout_seconds: float,
    render_max_bytes: int,
    render_memory_bytes: int,
    render_memory_total_bytes: int,
    run_kubeconfig: str | None,
) -> None:
    """Run the operator: serve every ModelDeployment and sync every ModelSync it sees."""
    try:
        runtime_images = parse_runtime_images(runtime_image_pairs)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--runtime-image") from None
    if not storage_initializer_image.strip():
        raise click.BadParameter(
            "an empty image; leave the flag out for the default",
            param_hint="--storage-initializer-image",
        )
    handler = logging.StreamHandler()
    handler.setFormatter(
        logs.JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=log_level, handlers=[handler])
    if log_level != "DEBUG":
        # kopf logs every handled watch event at INFO; ours say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = OperatorSettings(
        namespaces=namespaces,
        workers=workers,
        resync_seconds=resync_seconds,
        quiet_rollout_seconds=quiet_rollout_seconds,
        http_port=http_port,
        kubeconfig=run_kubeconfig or cluster.kubeconfig,
        git_cache_dir=git_cache_dir,
        max_revision_bytes=max_revision_bytes,
        leader_election=leader_elect or bool(shard),
        lease_namespace=lease_namespace,
        lease_seconds=lease_seconds,
        shard=shard,
        kube_qps=kube_qps,
        kube_burst=kube_burst,
        analysis_endpoints=analysis_endpoints,
        commit_status_api_urls=commit_status_api_urls,
        notification_endpoints=notification_endpoints,
        default_service_account=default_service_account,
        apply_as_operator=apply_as_operator,
        allow_other_namespaces=allow_other_namespaces,
        allow_cluster_scoped=allow_cluster_scoped,
        allow_remote_clusters=allow_remote_clusters,
        remote_cluster_servers=remote_cluster_servers,
        controllers=controllers,
        model_pod_security=model_pod_security,
        runtime_images=runtime_images,
        storage_initializer_image=storage_initializer_image.strip(),
        image_pull_policy=image_pull_policy,
        allow_file_urls=allow_file_urls,
        kustomize=kustomize,
        helm=helm,
        allow_remote_bases=allow_remote_bases,
        render_timeout_seconds=render_timeout_seconds,
        render_max_bytes=render_max_bytes,
        render_memory_bytes=render_memory_bytes,
        render_memory_total_bytes=render_memory_total_bytes,
    )
    from modelsync.runtime import operator  # kopf loads only for `run`

    try:
        kept_the_lead = operator.run(settings)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if not kept_the_lead:
        raise SystemExit(1)  # restarted, it waits for the lead like any other replica


_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")


def _shard_name(value: str) -> str:
    """A shard names a label value; refused at start-up, not at the first list request."""
    if not _LABEL_VALUE.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not a label value (at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit)",
            param_hint="--shard",
        )
    return value


def _analysis_endpoints(values: tuple[str, ...]) -> tuple[str, ...]:
    from modelsync.serving.canary import parse_endpoint

    try:
        return tuple(parse_endpoint(value) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--analysis-endpoint") from None


def _notification_endpoints(values: tuple[str, ...]) -> tuple[str, ...]:
    from modelsync.gitops.notices import parse_endpoint

    try:
        return tuple(parse_endpoint(value) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--notification-endpoint") from None


def _commit_status_api_urls(values: tuple[str, ...]) -> tuple[str, ...]:
    from modelsync.gitops.commitstatus import parse_api_url

    try:
        return tuple(parse_api_url(value) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--commit-status-api-url") from None


def _remote_cluster_servers(values: tuple[str, ...]) -> tuple[str, ...]:
    from modelsync.api.origins import parse_origin

    try:
        servers = tuple(
            parse_origin(value, "an API server", "https://prod-api.example.com:6443")
            for value in values
        )
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--remote-cluster-server") from None
    if any(not server.startswith("https://") for server in servers):
        raise click.BadParameter("https:// only (TLS)", param_hint="--remote-cluster-server")
    return servers


def _controllers(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    known = (c.CONTROLLER_GITOPS, c.CONTROLLER_SERVING)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise click.BadParameter(
            f"{value!r}: name one or both of {', '.join(known)}, e.g. --controllers serving",
            param_hint="--controllers",
        )
    return names


def main(argv: list[str] | None = None) -> int:
    try:
        main_group.main(args=argv, prog_name=program_name(sys.argv[0]), standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code or 0)
    except click.ClickException as error:
        error.show()
        return 2
    except click.exceptions.Abort:
        return 130
    except SystemExit as done:
        return int(done.code or 0) if isinstance(done.code, int) else 1
    return 0
