"""Waiting on cluster state in tests: list, then watch from that resourceVersion,
until a condition holds or a deadline passes. No sleeps: each change wakes us."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.dynamic import DynamicClient

from modelsync.api.conditions import find
from tests.support.paths import REPO

Condition = Callable[[Any], bool]


def wait_for(  # noqa: C901 - list-then-watch with deadlines
    list_call: Callable[..., Any],
    name: str,
    condition: Condition,
    *,
    namespace: str | None = None,
    timeout: float = 60.0,
    describe: str = "",
) -> Any:
    """Wait until the object `name` satisfies `condition`, which gets the object, or None
    while it does not exist. Returns the object (None if the condition was met by absence)."""
    kwargs: dict[str, Any] = {"field_selector": f"metadata.name={name}"}
    if namespace is not None:
        kwargs["namespace"] = namespace
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        listing = list_call(**kwargs)
        items, version = _items(listing)
        last = items[0] if items else None
        if condition(last):
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        watcher = kubernetes.watch.Watch()
        try:
            for event in watcher.stream(
                list_call,
                resource_version=version,
                timeout_seconds=max(1, int(remaining)),
                _request_timeout=remaining + 5,
                **kwargs,
            ):
                last = None if event["type"] == "DELETED" else event["object"]
                if condition(last):
                    return last
                if time.monotonic() >= deadline:
                    break
        except kubernetes.client.ApiException as error:
            if error.status != 410:  # 410 Gone: our resourceVersion is too old; list again
                raise
        finally:
            watcher.stop()
        if time.monotonic() >= deadline:
            break
    what = describe or f"{name} to satisfy {getattr(condition, '__name__', 'the condition')}"
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> None:
    """For state with nothing to watch (an HTTP answer, a process, the authorizer's
    cache, a test server's counter): ask `check` every `interval` seconds until it
    holds; fail naming `what` (and what `explain` adds, e.g. the last answer) after
    `timeout` seconds. Cluster objects: `wait_for`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def _items(listing: Any) -> tuple[list[Any], str]:
    """Typed lists (V1PodList) and custom-object lists (plain dicts) alike."""
    if isinstance(listing, dict):
        return listing.get("items") or [], listing["metadata"]["resourceVersion"]
    return listing.items or [], listing.metadata.resource_version


def condition_of(obj: Any, kind: str) -> Any:
    """The status condition of type `kind` of a typed client object, or None."""
    for condition in (obj.status.conditions or []) if obj is not None and obj.status else []:
        if condition.type == kind:
            return condition
    return None


def dict_condition(obj: dict[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The status condition of type `kind` of a custom object (a dict), or None."""
    return find(((obj or {}).get("status") or {}).get("conditions"), kind)


def wait_for_items(
    resource: Any,
    match: Callable[[dict[str, Any]], bool],
    *,
    namespace: str,
    timeout: float = 30.0,
    describe: str = "",
) -> dict[str, Any]:
    """Wait until some object of a dynamic-client `resource` in `namespace` matches;
    list once, then watch. For kinds the typed client cannot parse (events)."""
    deadline = time.monotonic() + timeout
    listing = resource.get(namespace=namespace).to_dict()
    for item in listing.get("items") or []:
        if match(item):
            found: dict[str, Any] = item
            return found
    version = listing["metadata"]["resourceVersion"]
    while (remaining := deadline - time.monotonic()) > 0:
        stream = resource.watch(
            namespace=namespace, resource_version=version, timeout=max(1, int(remaining))
        )
        for event in stream:
            item = event["raw_object"]
            version = item.get("metadata", {}).get("resourceVersion", version)
            if event["type"] in {"ADDED", "MODIFIED"} and match(item):
                return dict(item)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {describe or 'an object'}")


def wait_for_set(
    resource: Any,
    predicate: Callable[[list[dict[str, Any]]], bool],
    *,
    namespace: str,
    label_selector: str | None = None,
    timeout: float = 30.0,
    describe: str = "",
) -> list[dict[str, Any]]:
    """Wait until the set of objects (of a dynamic-client `resource`, in `namespace`,
    matching `label_selector`) satisfies `predicate`; e.g. "no pods left"."""
    deadline = time.monotonic() + timeout
    listing = resource.get(namespace=namespace, label_selector=label_selector).to_dict()
    objects = {item["metadata"]["name"]: item for item in listing.get("items") or []}
    version = listing["metadata"]["resourceVersion"]
    while not predicate(list(objects.values())):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {describe or 'the objects'}; "
                f"still there: {sorted(objects)}"
            )
        for event in resource.watch(
            namespace=namespace,
            label_selector=label_selector,
            resource_version=version,
            timeout=max(1, int(remaining)),
        ):
            item = event["raw_object"]
            version = item.get("metadata", {}).get("resourceVersion", version)
            if event["type"] == "DELETED":
                objects.pop(item["metadata"]["name"], None)
            elif event["type"] in {"ADDED", "MODIFIED"}:
                objects[item["metadata"]["name"]] = item
            if predicate(list(objects.values())):
                break
    return list(objects.values())


def install_crds(
    api: kubernetes.client.ApiClient,
    timeout: float = 60.0,
    paths: list[Path] | None = None,
    field_manager: str = "modelsync-tests",
) -> list[str]:
    """Apply every CRD of `paths` (default: crds/, the files users install) to the
    cluster of `api`, taking over fields others set, and wait until each is established.
    The session's cluster gets them from the `crds` fixture, a cluster of a test's or a
    benchmark's own from here."""
    definitions = DynamicClient(api).resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    files = paths if paths is not None else sorted((REPO / "crds").glob("*.yaml"))
    names = []
    for path in files:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            definitions.server_side_apply(
                body=crd,
                name=crd["metadata"]["name"],
                field_manager=field_manager,
                force_conflicts=True,
            )
            names.append(crd["metadata"]["name"])

    def established(crd: Any) -> bool:
        conditions = getattr(getattr(crd, "status", None), "conditions", None) or []
        return any(cond.type == "Established" and cond.status == "True" for cond in conditions)

    extensions = kubernetes.client.ApiextensionsV1Api(api)
    for name in names:
        wait_for(extensions.list_custom_resource_definition, name, established, timeout=timeout)
    return names


# The account every test namespace applies its git content as: the operators the tests
# run are started with --default-service-account TENANT_ACCOUNT, as a locked-down
# platform would run them, and its rights are the chart's ClusterRole for tenants.
TENANT_ACCOUNT = "modelsync-tenant"
# Not the chart's own name: a test that installs the chart must not take it over.
TENANT_ROLE = "modelsync-test-tenant"
CHART = REPO / "helm" / "modelsync"


def install_tenant_role(api: kubernetes.client.ApiClient, helm: Path) -> dict[str, Any]:
    """The chart's ClusterRole for tenants' ServiceAccounts (rendered by `helm`, so the
    tests prove the chart's rules), installed as TENANT_ROLE."""
    rendered = subprocess.run(
        [str(helm), "template", "t", str(CHART), "--show-only", "templates/rbac.yaml"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    role: dict[str, Any] = next(
        doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "t-modelsync-tenant"
    )
    role["metadata"] = {"name": TENANT_ROLE}
    DynamicClient(api).resources.get(
        api_version="rbac.authorization.k8s.io/v1", kind="ClusterRole"
    ).server_side_apply(
        body=role, name=TENANT_ROLE, field_manager="modelsync-tests", force_conflicts=True
    )
    return role


def make_tenant(api: kubernetes.client.ApiClient, namespace: str) -> None:
    """TENANT_ACCOUNT in `namespace`, bound there to TENANT_ROLE (install_tenant_role);
    what exists already is kept (a demo run twice)."""
    core = kubernetes.client.CoreV1Api(api)
    with _exists_ok():
        core.create_namespaced_service_account(
            namespace, kubernetes.client.V1ServiceAccount(metadata={"name": TENANT_ACCOUNT})
        )
    with _exists_ok():
        _bind_tenant(api, namespace)
    _wait_until_authorized(api, namespace)


def _wait_until_authorized(
    api: kubernetes.client.ApiClient, namespace: str, timeout: float = 30.0
) -> None:
    """RBAC is eventually consistent: a RoleBinding just made may not authorize for a
    moment, and a sync in that moment is refused as forbidden. Wait until the API
    server's authorizer says the tenant account may create ModelDeployments there."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{TENANT_ACCOUNT}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "create",
                "group": "modelsync.io",
                "resource": "modeldeployments",
            },
        },
    }
    authorization = kubernetes.client.AuthorizationV1Api(api)
    until(
        f"{TENANT_ACCOUNT} in {namespace} to be authorized (the authorizer's cache)",
        lambda: bool(authorization.create_subject_access_review(review).status.allowed),
        timeout,
    )


@contextlib.contextmanager
def _exists_ok() -> Iterator[None]:
    try:
        yield
    except kubernetes.client.ApiException as error:
        if error.status != 409:
            raise


def _bind_tenant(api: kubernetes.client.ApiClient, namespace: str) -> None:
    kubernetes.client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        namespace,
        kubernetes.client.V1RoleBinding(
            metadata=kubernetes.client.V1ObjectMeta(name=TENANT_ACCOUNT),
            role_ref=kubernetes.client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=TENANT_ROLE
            ),
            subjects=[
                kubernetes.client.RbacV1Subject(
                    kind="ServiceAccount", name=TENANT_ACCOUNT, namespace=namespace
                )
            ],
        ),
    )
