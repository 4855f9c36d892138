"""Start and stop a real Kubernetes control plane on loopback.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as
ordinary processes from the binaries `build` made. Every port is picked free
at start; certificates are made fresh; the state (pids, ports) is kept in
`<root>/cluster.json`, so `stop` works from another process and a crashed
run is recognised and cleaned up by the next `start`.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from testcluster import addresses, stages, versions
from testcluster import pki as pkimod
from testcluster.build import Binaries

STATE_FILE = "cluster.json"
SERVICE_CIDR = addresses.SERVICE_CIDR
SERVICE_IP = addresses.SERVICE_IP
POD_CIDR = addresses.KWOK_POD_CIDR
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# Dependents first, etcd last.
STOP_ORDER = (
    ("kwok", "kube-scheduler", "kube-controller-manager"),
    ("kube-apiserver",),
    ("etcd",),
)
# Client rate limits of kube-controller-manager and kube-scheduler: kwokctl's values.
CONTROL_PLANE_QPS = 5000
CONTROL_PLANE_BURST = 10000
PORT_NAMES = ("etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")
START_ATTEMPTS = 3
STOP_GRACE_SECONDS = 10.0


class ClusterError(RuntimeError):
    """The cluster could not start or stop; the message says which part and why."""


class PortInUseError(ClusterError):
    """A component lost the race for a port we had picked; start again with new ones."""


@dataclass
class Cluster:
    """A running local cluster, as recorded in its state file."""

    root: Path
    server: str
    kubeconfig: Path
    pids: dict[str, int]
    ports: dict[str, int]
    kubernetes_version: str = versions.KUBERNETES
    nodes: list[str] = field(default_factory=list)
    started_seconds: float = 0.0

    def save(self) -> None:
        data = asdict(self)
        data["root"] = str(self.root)
        data["kubeconfig"] = str(self.kubeconfig)
        tmp = self.root / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.rename(self.root / STATE_FILE)

    @classmethod
    def load(cls, root: Path) -> Cluster | None:
        try:
            data = json.loads((root / STATE_FILE).read_text())
            data["root"] = Path(data["root"])
            data["kubeconfig"] = Path(data["kubeconfig"])
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    @property
    def audit_log(self) -> Path:
        """Every write the API server answered, one JSON line each (see AUDIT_POLICY)."""
        return audit_log(self.root)

    def alive(self) -> dict[str, bool]:
        return {name: _owned_pid_alive(pid, self.root) for name, pid in self.pids.items()}

    def memory_bytes(self) -> dict[str, int]:
        """Resident memory of each component, from /proc."""
        usage: dict[str, int] = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        usage[name] = int(line.split()[1]) * 1024
        return usage


# --------------------------------------------------------------------------- processes


def _owned_pid_alive(pid: int, root: Path) -> bool:
    """True when `pid` runs and is one of ours (its command line names our root),
    so a recycled pid never gets a signal from us."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited already
        return False
    return str(root).encode() in cmdline


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (PR_SET_PDEATHSIG),
    so a killed test run leaves no control plane behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _spawn(
    binary: Path, args: list[str], log_path: Path, *, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )


def _log_tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now, all different (sockets held open until all are
    chosen). Another program can still take one before we bind it: `start` retries then."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stop_group(process: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the process group of `process` (started with start_new_session=True),
    SIGKILL it after `grace` seconds, and reap the process."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _terminate(pids: dict[str, int], alive: Callable[[int], bool]) -> None:
    """Stop components in STOP_ORDER, each group with SIGTERM and, after a grace
    period, SIGKILL. The API server shuts down in about a second while etcd still
    answers, but takes ten when etcd went first.

    `alive` decides which pids are still ours to signal: for a recorded cluster it
    checks the command line (pids get recycled); for children we have just spawned
    (maybe still between fork and exec) it asks their Popen."""
    ordered = {name for group in STOP_ORDER for name in group}
    groups = [*STOP_ORDER, tuple(name for name in pids if name not in ordered)]
    for group in groups:
        members = [pids[name] for name in group if name in pids]
        for pid in members:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            _reap(pids)
            if not any(alive(pid) for pid in members):
                break
            time.sleep(0.05)
        for pid in members:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        _reap(pids)


def _reap(pids: dict[str, int]) -> None:
    """Collect exit statuses of our own children so they do not linger as zombies."""
    for pid in pids.values():
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


# --------------------------------------------------------------------------- health


def _ssl_context(pki: pkimod.Pki | None) -> ssl.SSLContext:
    if pki is None:
        # kube-controller-manager and kube-scheduler serve /healthz with a certificate
        # they made up at start; nothing to verify it against.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _answers_ok(url: str, context: ssl.SSLContext | None) -> Callable[[], bool]:
    return lambda: _get(url, context) == b"ok"


class Api:
    """The few API calls the launcher itself needs, over the admin client certificate."""

    def __init__(self, server: str, pki: pkimod.Pki) -> None:
        self.server = server
        self.context = _ssl_context(pki)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except (urllib.error.URLError, OSError, ValueError):
            return None


def _wait(
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    watched: dict[str, tuple[subprocess.Popen[bytes], Path]],
) -> None:
    """Poll `ready` until it holds; fail at once, with its log, if a component exits."""
    deadline = time.monotonic() + timeout
    while True:
        for name, (process, log_path) in watched.items():
            code = process.poll()
            if code is not None:
                tail = _log_tail(log_path)
                error = PortInUseError if "address already in use" in tail else ClusterError
                raise error(
                    f"{name} exited with code {code} while waiting for {what}; "
                    f"last lines of {log_path}:\n{tail}"
                )
        if ready():
            return
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- start / stop


# Writes to Deployments (and their scale), with the request body: tests read who wrote
# which field (an autoscaled model's canary must never write `replicas` on the
# autoscaler's target). Every other write (create, update, patch, delete) at Metadata
# level (who, which verb, which object; no body): tests and benchmarks count the
# operator's writes per model from it (tests/support/audit.py). Reads are left out (a list of
# 1,000 objects every half second would swamp it). Runtime flags only: the binaries'
# build key is not involved.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Request
  verbs: [create, update, patch]
  resources:
  - group: apps
    resources: [deployments, deployments/scale]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
"""


def audit_log(root: Path) -> Path:
    """The API server's audit log (see AUDIT_POLICY): one JSON event a line."""
    return root / "logs" / "audit.log"


def _apiserver_args(
    root: Path, ports: dict[str, int], pki: pkimod.Pki, ranges: addresses.Ranges = addresses.FIRST
) -> list[str]:
    """The API server's command line: the same at first start and at a restart."""
    policy = root / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={audit_log(root)}",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1",
        f"--etcd-servers=http://127.0.0.1:{ports['etcd-client']}",
        "--bind-address=127.0.0.1",
        # The real node and its pods reach the API server there (through a forwarder
        # the node starts); the `kubernetes` Service's endpoint points at it.
        f"--advertise-address={ranges.advertise}",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={root / 'pki'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={ranges.service_cidr}",
        # Reach kubelets (logs, exec) by their node IP: a node's name would be looked up
        # in the machine's DNS, outside the cluster's addresses.
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        "--profiling=false",
        "--audit-log-format=json",
        # Blocking: a line is in the file when the response is sent, so a test reads
        # every write it waited for.
        "--audit-log-mode=blocking",
        "--v=0",
    ]


def kubeconfig_yaml(server: str, pki: pkimod.Pki, name: str = "modelsync-local") -> str:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_cert),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
        "current-context": name,
    }
    return yaml.safe_dump(config, sort_keys=False)


def fake_node(name: str, zone: str) -> dict[str, Any]:
    """A node kwok manages: room for the benchmarks' thousand pods, and GPUs so GPU
    models schedule."""
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "1000", "nvidia.com/gpu": "8"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
                "topology.kubernetes.io/zone": zone,
                "type": "kwok",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def _node_schedulable(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = node.get("spec", {}).get("taints", [])
    blocked = any(t.get("effect") in {"NoSchedule", "NoExecute"} for t in taints)
    return ready and not blocked and not node.get("spec", {}).get("unschedulable", False)


def status(root: Path) -> Cluster | None:
    """The cluster running from `root`, or None when none (or only a dead one) is there."""
    cluster = Cluster.load(root)
    if cluster is None or not all(cluster.alive().values()):
        return None
    return cluster


def stop(root: Path, log: TextIO = sys.stderr) -> bool:
    """Stop the cluster of `root`, if any of it runs. True when something was stopped."""
    if (root / "node").exists():
        # The real node first, while the API server still answers it. (Imported here:
        # the node module builds on this one.)
        from testcluster import node

        node.stop(root, log)
    cluster = Cluster.load(root)
    if cluster is None:
        return False
    running = {name: pid for name, pid in cluster.pids.items() if _owned_pid_alive(pid, root)}
    _terminate(cluster.pids, lambda pid: _owned_pid_alive(pid, root))
    if running:
        print(f"[cluster] stopped {', '.join(sorted(running))}", file=log)
    (root / STATE_FILE).unlink(missing_ok=True)
    return bool(running)


def stop_apiserver(cluster: Cluster, *, kill: bool = False) -> None:
    """Stop only the API server of a running cluster (SIGTERM, its graceful shutdown; or
    SIGKILL with `kill`); etcd, the controllers and kwok run on and find it gone. Returns
    when the process has exited, so its port is free for `start_apiserver`."""
    pid = cluster.pids["kube-apiserver"]
    if not _owned_pid_alive(pid, cluster.root):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while _owned_pid_alive(pid, cluster.root):
        _reap({"kube-apiserver": pid})
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        time.sleep(0.05)
    _reap({"kube-apiserver": pid})


def start_apiserver(
    cluster: Cluster,
    binaries: Binaries,
    *,
    die_with_parent: bool = False,
    timeout: float = 60.0,
) -> None:
    """Start the API server of `cluster` again after `stop_apiserver`: the same port,
    etcd and certificates, so every client reconnects to the same address with the same
    credentials and finds the same objects. Waits for /readyz; records the new pid."""
    if _owned_pid_alive(cluster.pids["kube-apiserver"], cluster.root):
        raise ClusterError("the API server still runs: stop_apiserver first")
    pki = pkimod.Pki(cluster.root / "pki")
    log_path = cluster.root / "logs" / "kube-apiserver.log"
    context = _ssl_context(pki)
    deadline = time.monotonic() + timeout
    while True:
        # Appended to the first run's log: both runs stay readable after a failure.
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(binaries.kube_apiserver), *_apiserver_args(cluster.root, cluster.ports, pki)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        cluster.pids["kube-apiserver"] = process.pid
        cluster.save()
        try:
            _wait(
                "kube-apiserver /readyz after a restart",
                lambda: _get(cluster.server + "/readyz", context) == b"ok",
                max(1.0, deadline - time.monotonic()),
                {"kube-apiserver": (process, log_path)},
            )
            return
        except PortInUseError:
            # Freed a moment ago, the port may still be held (a socket closing slowly):
            # the address must stay the same, so try it again until the deadline.
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def start(
    root: Path,
    binaries: Binaries,
    *,
    nodes: int = 2,
    die_with_parent: bool = False,
    log: TextIO = sys.stderr,
    timeout: float = 120.0,
    pick_ports: Callable[[int], list[int]] = free_ports,
    ranges: addresses.Ranges = addresses.FIRST,
) -> Cluster:
    """Start a cluster in `root` (created if missing) and wait until a node is schedulable.

    A healthy cluster already running from `root` is returned as it is. Anything
    else found there (a crashed run's processes, data and certificates) is cleared
    first, because a half-old cluster is worse than a new one.
    """
    root = root.resolve()
    running = status(root)
    if running is not None and _get(
        running.server + "/readyz", _ssl_context(pkimod.Pki(root / "pki"))
    ):
        print(f"[cluster] already running at {running.server}", file=log)
        return running
    if root.exists():
        if Cluster.load(root) is not None:
            print(f"[cluster] clearing the stale cluster in {root}", file=log)
        stop(root, log)
        for child in (
            "etcd",
            "pki",
            "logs",
            "node",
            "kwok.yaml",
            "kubeconfig",
            "audit-policy.yaml",
            STATE_FILE,
        ):
            path = root / child
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    last_error: ClusterError | None = None
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ports = dict(zip(PORT_NAMES, pick_ports(len(PORT_NAMES)), strict=True))
            return _start_once(root, binaries, ports, nodes, die_with_parent, log, timeout, ranges)
        except PortInUseError as error:
            last_error = error
            print(
                f"[cluster] a port was taken while starting (attempt {attempt}); retrying", file=log
            )
    assert last_error is not None
    raise last_error


def _start_once(
    root: Path,
    binaries: Binaries,
    ports: dict[str, int],
    nodes: int,
    die_with_parent: bool,
    log: TextIO,
    timeout: float,
    ranges: addresses.Ranges = addresses.FIRST,
) -> Cluster:
    started = time.monotonic()
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    shutil.rmtree(root / "etcd", ignore_errors=True)
    pki = pkimod.create(root / "pki", ranges.service_ip, ranges.advertise)
    server = f"https://127.0.0.1:{ports['apiserver']}"
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(kubeconfig_yaml(server, pki))
    kubeconfig.chmod(0o600)
    processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    cluster = Cluster(root=root, server=server, kubeconfig=kubeconfig, pids={}, ports=ports)

    def launch(name: str, binary: Path, args: list[str]) -> None:
        log_path = logs / f"{name}.log"
        process = _spawn(binary, args, log_path, die_with_parent=die_with_parent)
        processes[name] = (process, log_path)
        cluster.pids[name] = process.pid
        cluster.save()

    try:
        etcd_url = f"http://127.0.0.1:{ports['etcd-client']}"
        launch(
            "etcd",
            binaries.etcd,
            [
                f"--data-dir={root / 'etcd'}",
                "--name=modelsync-local",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                f"--initial-cluster=modelsync-local=http://127.0.0.1:{ports['etcd-peer']}",
                # A throwaway test store: durability costs fsyncs and buys nothing here.
                "--unsafe-no-fsync",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
        )
        _wait("etcd", lambda: _get(etcd_url + "/health") is not None, 30, processes)

        launch("kube-apiserver", binaries.kube_apiserver, _apiserver_args(root, ports, pki, ranges))
        apiserver_context = _ssl_context(pki)
        _wait(
            "kube-apiserver /readyz",
            lambda: _get(server + "/readyz", apiserver_context) == b"ok",
            60,
            processes,
        )

        launch(
            "kube-controller-manager",
            binaries.kube_controller_manager,
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['controller-manager']}",
                f"--cert-dir={root / 'pki' / 'controller-manager'}",
                "--leader-elect=false",
                # Defaults (20 QPS, 5 workers) are sized for sharing a big control plane;
                # tests and benchmarks create a thousand Deployments at once. Unlimited
                # in effect, as kwok's own kwokctl runs it: each of its requests stands
                # for work a real cluster spreads over many machines.
                f"--kube-api-qps={CONTROL_PLANE_QPS}",
                f"--kube-api-burst={CONTROL_PLANE_BURST}",
                f"--cluster-cidr={ranges.cluster_cidr}",
                f"--service-cluster-ip-range={ranges.service_cidr}",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--profiling=false",
            ],
        )
        launch(
            "kube-scheduler",
            binaries.kube_scheduler,
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
                f"--cert-dir={root / 'pki' / 'scheduler'}",
                "--leader-elect=false",
                f"--kube-api-qps={CONTROL_PLANE_QPS}",
                f"--kube-api-burst={CONTROL_PLANE_BURST}",
                "--profiling=false",
            ],
        )
        kwok_config = root / "kwok.yaml"
        defaults = subprocess.run(
            [str(binaries.multicall), "kwok-default-stages"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        kwok_config.write_text(stages.kwok_config(defaults))
        launch(
            "kwok",
            binaries.kwok,
            [
                f"--kubeconfig={kubeconfig}",
                f"--config={kwok_config}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                f"--cidr={ranges.kwok_pod_cidr}",
                f"--node-ip={ranges.kwok_node_ip}",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{ports['kwok']}",
            ],
        )
        insecure = _ssl_context(None)
        for name, url, context in (
            (
                "kube-controller-manager",
                f"https://127.0.0.1:{ports['controller-manager']}",
                insecure,
            ),
            ("kube-scheduler", f"https://127.0.0.1:{ports['scheduler']}", insecure),
            ("kwok", f"http://127.0.0.1:{ports['kwok']}", None),
        ):
            _wait(f"{name} /healthz", _answers_ok(url + "/healthz", context), 60, processes)

        api = Api(server, pki)
        zones = ("zone-a", "zone-b")
        for index in range(nodes):
            name = f"kwok-node-{index}"
            api.request("POST", "/api/v1/nodes", fake_node(name, zones[index % len(zones)]))
            cluster.nodes.append(name)

        def schedulable() -> bool:
            listing = api.get("/api/v1/nodes")
            items = listing.get("items", []) if listing else []
            return len(items) >= nodes and all(_node_schedulable(item) for item in items)

        _wait(f"{nodes} schedulable kwok nodes", schedulable, timeout, processes)
        # Pods need their namespace's `default` ServiceAccount; the controller-manager
        # makes it, and a test that starts before it would fail for no reason of its own.
        _wait(
            "the default ServiceAccount",
            lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            timeout,
            processes,
        )
    except BaseException:
        children = {process.pid: process for process, _ in processes.values()}
        _terminate(cluster.pids, lambda pid: children[pid].poll() is None)
        (root / STATE_FILE).unlink(missing_ok=True)
        raise
    cluster.started_seconds = round(time.monotonic() - started, 2)
    cluster.save()
    print(
        f"[cluster] Kubernetes {versions.KUBERNETES} up at {server} with {nodes} kwok nodes "
        f"in {cluster.started_seconds:.1f}s",
        file=log,
    )
    return cluster


@contextlib.contextmanager
def running(root: Path, binaries: Binaries, **options: Any) -> Iterator[Cluster]:
    """A cluster for the duration of a `with` block; stopped on the way out."""
    cluster = start(root, binaries, **options)
    try:
        yield cluster
    finally:
        stop(root)
