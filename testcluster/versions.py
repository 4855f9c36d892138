"""The pinned versions of everything the local cluster is built from.

Change a version here, then run `python -m testcluster pin` to regenerate
`gobuild/go.mod` and `gobuild/go.sum` from it.
"""

from __future__ import annotations

KUBERNETES = "v1.37.2"
# Released by the Kubernetes project at the same tag; the binaries report it.
KUBERNETES_BUILD_DATE = "2026-10-27T12:01:04Z"
# The etcd that KUBERNETES itself requires (its go.mod), so one build serves both.
ETCD = "v3.7.0"
KWOK = "v0.8.0"
HELM = "v4.3.1"
# The `go` line of KUBERNETES' go.mod; older toolchains fetch this one (GOTOOLCHAIN=auto).
GO = "1.26.0"

# Every program the multi-call binary answers to (by argv[0]).
PROGRAMS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kwok",
    "helm",
)


def staging_version(kubernetes: str = KUBERNETES) -> str:
    """k8s.io/kubernetes vX.Y.Z publishes its staging modules (k8s.io/api, ...) as v0.Y.Z."""
    major, minor, patch = kubernetes.removeprefix("v").split(".")
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {kubernetes!r}")
    return f"v0.{minor}.{patch}"


def ldflags() -> str:
    """Linker flags that make each binary report its real release, not v0.0.0-master."""
    major, minor, _ = KUBERNETES.removeprefix("v").split(".")
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate={KUBERNETES_BUILD_DATE}",
        ]
    flags.append(f"-X helm.sh/helm/v4/internal/version.version={HELM}")
    flags.append(f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK.removeprefix('v')}")
    return " ".join(flags)
