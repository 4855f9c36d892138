"""One real node beside the kwok ones: a kubelet, kube-proxy and containerd that run
real containers, in a network namespace the harness creates and deletes.

    host (127.0.0.1: API server, tests)   relay 198.18.0.1:<api port> -> 127.0.0.1
      ms-node0 198.18.0.1/24  ── veth ──  eth0 198.18.0.2/24   netns "modelsync-node"
      route 198.18.96.0/24 via .0.2        containerd, kubelet, kube-proxy (iptables)
                                           bridge msbr0 -> pods in 198.18.96.0/24

Only one real node runs per machine (the host end of the veth has one address);
`/run/modelsync-node.json` names the cluster that owns it, so a crashed run's node is
cleaned up by the next start. containerd's state lives under the cluster root, its
content store under the cache (images survive between runs). `stop` removes every
container, mount, namespace and interface the node made; `leftovers` lists any that
remain (a test checks it is empty).

The settings come from "A real node on these machines" in the design notes: cgroup
v1 (`failCgroupV1: false`, cgroupfs, no QoS cgroups), no swap or eviction checks, and
containerd's `restrict_oom_score_adj` (lowering oom_score_adj is forbidden here).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import yaml

from testcluster import addresses, images, launcher
from testcluster import pki as pkimod
from testcluster.build import Binaries, cache_root

NAME = "real-node-0"
NETNS = "modelsync-node"
HOST_IFACE = "ms-node0"
NODE_IFACE = "ms-node0p"  # renamed eth0 inside the namespace
BRIDGE = "msbr0"
OWNER_FILE = Path("/run/modelsync-node.json")
STATE_FILE = "node.json"
LABEL = "modelsync.io/real-node"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
# Every pod meant for the real node carries these (and `imagePullPolicy: Never`).
TOLERATION = {"key": LABEL, "operator": "Exists", "effect": "NoSchedule"}
NODE_SELECTOR = {LABEL: "true"}
REQUIRED = {
    "containerd": "/usr/bin/containerd",
    "ctr": "/usr/bin/ctr",
    "runc": "/usr/sbin/runc",
    "the CNI plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "ip": "/usr/sbin/ip",
    "nsenter": "/usr/bin/nsenter",
}
CNI_BIN = "/usr/lib/cni"
CNI_CACHE = Path("/var/lib/cni/results")
NETWORK = "modelsync"
# containerd's CRI puts every container's cgroup under this parent (cgroupfs driver).
CGROUP_PARENT = "k8s.io"
READY_TIMEOUT = 180.0


class NodeError(launcher.ClusterError):
    """The real node could not start; the message is one line saying why, then details."""


@dataclass
class Node:
    """A running real node, as recorded in `<root>/node/node.json`."""

    root: Path  # the cluster's root
    pids: dict[str, int]
    name: str = NAME
    started_seconds: float = 0.0

    @property
    def directory(self) -> Path:
        return self.root / "node"

    @property
    def socket(self) -> Path:
        return self.directory / "containerd.sock"

    def ctr(self) -> list[str]:
        """The `ctr` command prefix that talks to this node's containerd."""
        return ["ctr", "--address", str(self.socket)]

    def netns_exec(self, *command: str) -> list[str]:
        """A command line that runs `command` in the node's network namespace."""
        return ["nsenter", f"--net=/run/netns/{NETNS}", "--", *command]

    def save(self) -> None:
        data = asdict(self) | {"root": str(self.root)}
        (self.directory / STATE_FILE).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, root: Path) -> Node | None:
        try:
            data = json.loads((root / "node" / STATE_FILE).read_text())
            data["root"] = Path(data["root"])
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None


# --------------------------------------------------------------------------- checks


def why_not(binaries: Binaries | None = None) -> str | None:
    """None when this machine can run the real node, else one line saying why not."""
    if os.geteuid() != 0:
        return "the real node needs root (network namespaces, mounts, containerd); run as root"
    missing = [what for what, path in REQUIRED.items() if not Path(path).exists()]
    if missing:
        return f"{', '.join(missing)} missing: run `make test-deps` as root (apt-get)"
    for controller in ("cpu", "memory", "pids"):
        if (
            not any(Path(f"/sys/fs/cgroup/{name}").is_dir() for name in (controller, "unified"))
            and not Path("/sys/fs/cgroup/cgroup.controllers").is_file()
        ):
            return f"no cgroup controller {controller} under /sys/fs/cgroup"
    if binaries is not None and not binaries.kubelet.exists():
        return f"no kubelet in {binaries.directory}: rebuild them (make cluster-binaries)"
    return None


# --------------------------------------------------------------------------- plumbing


def _run(
    command: Sequence[str], what: str, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise NodeError(f"{what} failed: {' '.join(command)}: {result.stderr.strip()}")
    return result


def _netns_exists() -> bool:
    return Path(f"/run/netns/{NETNS}").exists()


def _iface_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def create_network() -> None:
    """The node's namespace and the veth between it and the host (host end 198.18.0.1)."""
    link = f"/{addresses.LINK_PREFIX}"
    _run(["ip", "netns", "add", NETNS], "creating the node's network namespace")
    in_ns = ["ip", "-n", NETNS]
    steps = [
        ["ip", "link", "add", HOST_IFACE, "type", "veth", "peer", "name", NODE_IFACE],
        ["ip", "link", "set", NODE_IFACE, "netns", NETNS],
        ["ip", "addr", "add", addresses.HOST_IP + link, "dev", HOST_IFACE],
        ["ip", "link", "set", HOST_IFACE, "up"],
        [*in_ns, "link", "set", "lo", "up"],
        [*in_ns, "link", "set", NODE_IFACE, "name", "eth0"],
        [*in_ns, "addr", "add", addresses.NODE_IP + link, "dev", "eth0"],
        [*in_ns, "link", "set", "eth0", "up"],
        [*in_ns, "route", "add", "default", "via", addresses.HOST_IP],
        ["ip", "route", "add", addresses.NODE_POD_CIDR, "via", addresses.NODE_IP],
        # Pods' traffic passes through the namespace; the host only routes to it.
        ["ip", "netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
    ]
    for step in steps:
        _run(step, "setting up the node's network")


def delete_network(timeout: float = 15.0) -> None:
    """Delete the namespace, and the veth with the route through it. Either can stay
    busy for a moment after the node's processes were killed (a dying container's
    mount namespace still holds the namespace's mount), hence the retries."""
    deadline = time.monotonic() + timeout
    while _netns_exists() or _iface_exists(HOST_IFACE):
        if _netns_exists():
            _run(["ip", "netns", "delete", NETNS], "", check=False)
        if _iface_exists(HOST_IFACE):
            _run(["ip", "link", "delete", HOST_IFACE], "", check=False)
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)


def _mounts_under(prefixes: Sequence[Path]) -> list[str]:
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
                found.append(point)
    return found


def _unmount_all(prefixes: Sequence[Path]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    mnt_detach = 2
    for _ in range(5):  # mounts can stack; a few passes take them all off
        points = _mounts_under(prefixes)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            libc.umount2(point.encode(), mnt_detach)


def _processes_naming(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


# A container's root filesystem is an overlay of its node's snapshots: where ours are.
SNAPSHOTS = "containerd/root/io.containerd.snapshotter.v1.overlayfs/snapshots/"


def runs_on_snapshots(mountinfo: str, snapshots: str) -> bool:
    """Whether a process's root mount (in its /proc/PID/mountinfo) is an overlay whose
    layers lie under `snapshots`."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            return snapshots in line
    return False


def _container_processes(directory: Path | None = None) -> list[int]:
    """Processes in the containers' cgroups that run on the snapshots of this node
    (`directory`), or of any real node of ours (None). Killing a shim does not kill its
    containers: a node killed rather than stopped leaves them running, reparented to
    init, with no containerd left that knows them."""
    snapshots = f"{directory}/{SNAPSHOTS}" if directory is not None else f"/node/{SNAPSHOTS}"
    pids: set[int] = set()
    for procs in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/**/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(pid) for pid in procs.read_text().split())
    found = []
    for pid in sorted(pids):
        with contextlib.suppress(OSError):
            if runs_on_snapshots(Path(f"/proc/{pid}/mountinfo").read_text(), snapshots):
                found.append(pid)
    return found


def _kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _orphans() -> list[int]:
    """Container processes of real nodes of ours whose shim is gone (their parent is
    init): what a node killed rather than stopped left behind."""
    found = []
    for pid in _container_processes():
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = Path(f"/proc/{pid}/status").read_text()
            parent = next(x for x in status.splitlines() if x.startswith("PPid:"))
            if int(parent.split()[1]) == 1:
                found.append(pid)
    return found


# --------------------------------------------------------------------------- configuration


def containerd_config(node: Node) -> str:
    directory = node.directory
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{directory / "containerd" / "root"}"
state = "{directory / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{node.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{directory / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{images.PAUSE}"
  # This sandbox forbids lowering oom_score_adj: without this every pod sandbox fails
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pods' namespaces are mounted under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{directory / "cni"}"
"""


def cni_config(node: Node) -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # the host routes to the pod range: no NAT needed
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": addresses.NODE_POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.directory / "cni-ipam"),
                },
            }
        ],
    }


def kubelet_config(node: Node) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The design notes' settings for this machine (cgroup v1, no swap accounting).
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "localStorageCapacityIsolation": False,
        "evictionHard": {},
        "address": addresses.NODE_IP,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        # Reachable only from the host through the veth: kubectl logs and exec.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "podLogsDir": str(node.directory / "pod-logs"),
        "registerWithTaints": [TAINT],
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }


def kube_proxy_config(node: Node) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": addresses.CLUSTER_CIDR,
        "hostnameOverride": NAME,
        "bindAddress": addresses.NODE_IP,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        "clientConnection": {"kubeconfig": str(node.directory / "kubeconfig")},
        # Zero leaves the host's conntrack sysctls alone (a namespace may not set them).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


# --------------------------------------------------------------------------- start / stop


def _claim(root: Path) -> None:
    """Take the machine's one real-node slot, cleaning up after a dead owner."""
    try:
        owner = Path(json.loads(OWNER_FILE.read_text())["root"])
    except (OSError, ValueError, KeyError, TypeError):
        owner = None
    if owner is not None and owner != root:
        previous = Node.load(owner)
        if previous is not None and any(
            launcher._owned_pid_alive(pid, owner) for pid in previous.pids.values()
        ):
            raise NodeError(
                f"another real node runs on this machine, from {owner}: stop it first "
                f"(python -m testcluster down --root {owner})"
            )
        stop(owner)
    # Nodes killed before an earlier owner: their containers, with no node to stop.
    _kill_all(_orphans())
    # A crash can leave the namespace and interface without any owner file.
    delete_network()
    OWNER_FILE.write_text(json.dumps({"root": str(root)}) + "\n")


def start(
    cluster: launcher.Cluster,
    binaries: Binaries,
    *,
    die_with_parent: bool = False,
    log: TextIO = sys.stderr,
) -> Node:
    """Start the real node of `cluster` and wait until it is Ready; import its images."""
    reason = why_not(binaries)
    if reason is not None:
        raise NodeError(reason)
    root = cluster.root
    existing = Node.load(root)
    if existing is not None and all(
        launcher._owned_pid_alive(pid, root) for pid in existing.pids.values()
    ):
        return existing
    started = time.monotonic()
    node = Node(root=root, pids={})
    directory = node.directory
    if directory.exists():  # a node of this cluster that died: clear it first
        stop(root)
        shutil.rmtree(directory, ignore_errors=True)
    _claim(root)
    for sub in ("cni", "logs", "pod-logs", "containerd/root", "kubelet"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    content = cache_root() / "containerd-content"
    content.mkdir(parents=True, exist_ok=True)
    (directory / "containerd" / "root" / "io.containerd.content.v1.content").symlink_to(content)
    pki = pkimod.Pki(root / "pki")
    port = cluster.ports["apiserver"]
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(launcher.kubeconfig_yaml(f"https://{addresses.HOST_IP}:{port}", pki))
    kubeconfig.chmod(0o600)
    (directory / "containerd.toml").write_text(containerd_config(node))
    (directory / "cni" / "10-modelsync.conflist").write_text(json.dumps(cni_config(node)))
    (directory / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(node)))
    (directory / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(node)))
    processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def launch(name: str, command: list[str]) -> None:
        log_path = directory / "logs" / f"{name}.log"
        process = launcher._spawn(
            Path(command[0]), command[1:], log_path, die_with_parent=die_with_parent
        )
        processes[name] = (process, log_path)
        node.pids[name] = process.pid
        node.save()

    try:
        create_network()
        launch(
            "apiserver-relay",
            [
                sys.executable,
                "-m",
                "testcluster.forward",
                f"{addresses.HOST_IP}:{port}",
                f"127.0.0.1:{port}",
                str(root),
            ],
        )
        launch(
            "containerd",
            node.netns_exec("/usr/bin/containerd", "--config", str(directory / "containerd.toml")),
        )
        launcher._wait(
            "containerd's socket",
            lambda: _run([*node.ctr(), "version"], "", check=False).returncode == 0,
            30,
            processes,
        )
        archives = [images.pause_archive(binaries.pause), images.http_archive()]
        for archive in archives:
            images.import_image(node.ctr(), archive)
        launch(
            "kubelet",
            node.netns_exec(
                str(binaries.kubelet),
                f"--config={directory / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={directory / 'kubelet'}",
                f"--node-ip={addresses.NODE_IP}",
                f"--hostname-override={NAME}",
                f"--node-labels={LABEL}=true",
                "--v=1",
            ),
        )
        launch(
            "kube-proxy",
            node.netns_exec(
                str(binaries.kube_proxy), f"--config={directory / 'kube-proxy.yaml'}", "--v=1"
            ),
        )
        api = launcher.Api(cluster.server, pki)

        def ready() -> bool:
            found = api.get(f"/api/v1/nodes/{NAME}")
            conditions = (found or {}).get("status", {}).get("conditions", [])
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        launcher._wait(f"the real node {NAME} to be Ready", ready, READY_TIMEOUT, processes)
    except BaseException as error:
        detail = "\n".join(
            f"--- last lines of {path}:\n{launcher._log_tail(path, 10)}"
            for _, path in processes.values()
        )
        stop(root)
        if isinstance(error, (NodeError, images.ImageError, launcher.ClusterError)):
            raise NodeError(f"the real node did not start: {error}\n{detail}") from error
        raise
    node.started_seconds = round(time.monotonic() - started, 1)
    node.save()
    print(f"[cluster] real node {NAME} Ready in {node.started_seconds:.1f}s", file=log)
    return node


def _remove_containers(node: Node) -> None:
    """Kill and delete every task and container of the node's containerd (pods' sandboxes
    included), so no container process outlives the node."""
    ctr = [*node.ctr(), "-n", "k8s.io"]

    def listed() -> set[str]:
        result = _run([*ctr, "tasks", "ls", "-q"], "", check=False)
        return set(result.stdout.split()) if result.returncode == 0 else set()

    for task in listed():
        _run([*ctr, "tasks", "kill", "-a", "-s", "SIGKILL", task], "", check=False)
    # containerd deletes a killed task itself once it has exited; delete what lingers.
    deadline = time.monotonic() + 15
    while remaining := listed():
        force = ["--force"] if time.monotonic() > deadline else []
        for task in remaining:
            _run([*ctr, "tasks", "delete", *force, task], "", check=False)
        if force:
            break
        time.sleep(0.2)
    containers = _run([*ctr, "containers", "ls", "-q"], "", check=False)
    for container in containers.stdout.split():
        _run([*ctr, "containers", "delete", container], "", check=False)
    _remove_cni_cache()


def _remove_cni_cache() -> None:
    """libcni caches each sandbox's result; the kubelet removes it with the pod (CNI DEL),
    which a node being torn down does not wait for. Its containerd may also have deleted
    a sandbox whose DEL never ran (a pod removed mid-setup), so the cache is swept by our
    network's name, not by the containers still listed."""
    for cached in CNI_CACHE.glob(f"{NETWORK}-*-eth0"):
        container = cached.name.removeprefix(f"{NETWORK}-").removesuffix("-eth0")
        cached.unlink(missing_ok=True)
        (CNI_CACHE / f"cni-loopback-{container}-lo").unlink(missing_ok=True)


def _remove_cgroups() -> None:
    """The cgroup parent runc made for the containers (empty once they are gone; rmdir
    refuses a cgroup that still has members, so nothing else's is touched)."""
    for parent in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"):
        for child in sorted(parent.rglob("*"), key=lambda path: len(path.parts), reverse=True):
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def stop(root: Path, log: TextIO = sys.stderr) -> bool:
    """Stop the real node of the cluster in `root` and remove everything it made.
    True when something was running."""
    node = Node.load(root) or Node(root=root, pids={})
    directory = node.directory
    alive = {name: pid for name, pid in node.pids.items() if launcher._owned_pid_alive(pid, root)}
    for name in ("kubelet", "kube-proxy"):
        if name in alive:
            launcher._terminate(
                {name: alive[name]}, lambda pid: launcher._owned_pid_alive(pid, root)
            )
    if "containerd" in alive:
        _remove_containers(node)
    launcher._terminate(
        {name: pid for name, pid in alive.items() if name in ("containerd", "apiserver-relay")},
        lambda pid: launcher._owned_pid_alive(pid, root),
    )
    # Shims outlive containerd by design; any left (a crash) go now, with their containers.
    shims = _processes_naming(str(node.socket))
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(launcher._owned_pid_alive(pid, node.socket) for pid in shims):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    _kill_all(_container_processes(directory))  # their shims gone, containers may not be
    _unmount_all([directory])
    _remove_cgroups()
    with contextlib.suppress(OSError, ValueError, KeyError):
        if Path(json.loads(OWNER_FILE.read_text())["root"]) == root:
            _remove_cni_cache()
            delete_network()
            OWNER_FILE.unlink()
    (directory / STATE_FILE).unlink(missing_ok=True)
    if alive:
        print(f"[cluster] stopped the real node ({', '.join(sorted(alive))})", file=log)
    return bool(alive)


def leftovers(root: Path) -> list[str]:
    """What the real node of `root` left behind: empty after a clean stop."""
    directory = root / "node"
    found = [f"mount {point}" for point in _mounts_under([directory])]
    found += [f"process {pid}" for pid in _processes_naming(str(directory))]
    found += [f"container process {pid}" for pid in _container_processes(directory)]
    if _netns_exists():
        found.append(f"network namespace {NETNS}")
    if _iface_exists(HOST_IFACE):
        found.append(f"interface {HOST_IFACE}")
    found += [f"cgroup {path}" for path in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}")]
    found += [f"CNI cache {path}" for path in CNI_CACHE.glob(f"{NETWORK}-*")]
    routes = _run(["ip", "route", "show", addresses.NODE_POD_CIDR], "", check=False).stdout
    if routes.strip():
        found.append(f"route {routes.strip()}")
    return found
