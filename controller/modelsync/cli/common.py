"""What the commands share: the cluster (reached lazily), the options written once,
and the output (stdout for results, stderr for verdicts and errors)."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
from rich.console import Console

from modelsync.api import conditions
from modelsync.api import constants as c
from modelsync.gitops import render as rendering

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


def renderer_options(function: Any) -> Any:
    """--kustomize and --helm: the binaries that render a kustomization or a chart."""
    for name, version, renders in (
        ("helm", rendering.HELM_VERSION, "charts (spec.helm)"),
        ("kustomize", rendering.KUSTOMIZE_VERSION, "kustomizations"),
    ):
        function = click.option(
            f"--{name}",
            f"{name}_binary",
            envvar=f"MODELSYNC_{name.upper()}",
            default=name,
            show_default=True,
            metavar="PATH",
            help=f"{name} {version} binary that renders {renders}",
        )(function)
    return function


def render_settings(kustomize_binary: str, helm_binary: str) -> rendering.RenderSettings:
    return rendering.RenderSettings(kustomize=kustomize_binary, helm=helm_binary)
