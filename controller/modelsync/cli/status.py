"""`modelsync status`, `history` and `test`: what runs, how it got there, and whether
the live model answers its samples."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.table import Table

from modelsync.api import constants as c
from modelsync.cli.common import (
    MD,
    MS,
    Cluster,
    condition,
    fail,
    namespace_option,
    out,
    pass_cluster,
    ready_cell,
)


@click.command(epilog="Example:\n\n\b\n  modelsync status -A")
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


@click.command(epilog="Example:\n\n\b\n  modelsync history iris -n models")
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


@click.command(
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
