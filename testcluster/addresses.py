"""Every address the local cluster uses, in one place.

All of them lie in 198.18.0.0/15, the range set aside for benchmarking network
devices (RFC 2544): nothing a test does can reach a real private network (10/8,
172.16/12, 192.168/16) or the internet by accident. A unit test checks that no
address of the harness strays outside it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The host's end of the veth into the real node's network namespace. Servers that
# pods must reach (the API server, git, the object store) listen here.
HOST_IP = "198.18.0.1"
# The real node's end: the kubelet registers with it, kube-proxy's rules live behind it.
NODE_IP = "198.18.0.2"
LINK_PREFIX = 24
# Services; the first address is the `kubernetes` Service.
SERVICE_CIDR = "198.19.0.0/16"
SERVICE_IP = "198.19.0.1"
# Pods of every node, then each node's share of it.
CLUSTER_CIDR = "198.18.64.0/18"
KWOK_POD_CIDR = "198.18.64.1/19"  # kwok's --cidr: its first address and prefix
KWOK_NODE_IP = "198.18.1.1"
NODE_POD_CIDR = "198.18.96.0/24"
# On the node's link, never assigned: an object store there is unreachable (tests of
# a model download that cannot connect).
UNREACHABLE_STORE = "198.18.0.250"
# A remote cluster's API server (tests of spec.kubeConfig): on the node's link, never
# assigned, nothing listens there.
UNREACHABLE_API = "198.18.0.251"


@dataclass(frozen=True)
class Ranges:
    """The addresses of one local cluster: the API server's advertised address, its
    Services, its pods (all of them, then kwok's share) and kwok's node address."""

    advertise: str
    service_cidr: str
    service_ip: str
    cluster_cidr: str
    kwok_pod_cidr: str
    kwok_node_ip: str


FIRST = Ranges(HOST_IP, SERVICE_CIDR, SERVICE_IP, CLUSTER_CIDR, KWOK_POD_CIDR, KWOK_NODE_IP)
# A second cluster, kwok only (the remote cluster of tests of spec.kubeConfig): every
# range disjoint from the first's, and from the real node's.
SECOND = Ranges(
    advertise="198.18.2.1",
    service_cidr="198.18.160.0/20",
    service_ip="198.18.160.1",
    cluster_cidr="198.18.128.0/19",
    kwok_pod_cidr="198.18.128.1/19",
    kwok_node_ip="198.18.3.1",
)


# What a scan of source files refuses (`private_addresses`), and what test traffic may
# aim at: loopback and the benchmarking range.
# 10/8, 172.16/12 and 192.168/16, written as numbers so that the scan of this very
# file does not find them.
PRIVATE = tuple(
    ipaddress.IPv4Network(net)
    for net in ((10 << 24, 8), (172 << 24 | 16 << 16, 12), (192 << 24 | 168 << 16, 16))
)
ALLOWED = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv4Network("198.18.0.0/15"))
# An IPv4 address, optionally with a prefix, not part of a longer dotted run (a version).
IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\d.])")


def private_addresses(text: str) -> list[tuple[int, str]]:
    """(line, address) of every address or network in `text` that touches a private range."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in IPV4.finditer(line):
            try:
                network = ipaddress.ip_network(match.group(0), strict=False)
            except ValueError:
                continue
            # Any route covers every range (0.0.0.0/0): only what aims at one counts.
            if network.prefixlen and any(network.overlaps(private) for private in PRIVATE):
                found.append((number, match.group(0)))
    return found


def files_naming_private_addresses(files: Iterable[Path], root: Path) -> list[str]:
    """`path:line: address` (path from `root`) for every private address in `files`."""
    return [
        f"{path.relative_to(root)}:{line}: {address}"
        for path in files
        for line, address in private_addresses(path.read_text(errors="replace"))
    ]
