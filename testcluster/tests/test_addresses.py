"""The harness sends traffic only to loopback and 198.18.0.0/15 (RFC 2544): never to a
private network a developer's or CI machine may really be attached to."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from testcluster import addresses

HARNESS = Path(__file__).resolve().parents[1]
ALLOWED = addresses.ALLOWED
private_addresses = addresses.private_addresses


def harness_files() -> list[Path]:
    """The harness's own code (what starts the cluster, the node and the servers), not
    these tests of it, which name private addresses on purpose."""
    tests = Path(__file__).resolve().parent
    return sorted(
        path
        for pattern in ("**/*.py", "**/*.go")
        for path in HARNESS.glob(pattern)
        if tests not in path.parents
    )


def test_the_scan_finds_private_addresses() -> None:
    text = 'cidr = "10.244.0.1/16"\nip = "172.20.1.1"\nx = "192.168.1.1:80"\nv = "1.37.10.2.1"'
    assert private_addresses(text) == [(1, "10.244.0.1/16"), (2, "172.20.1.1"), (3, "192.168.1.1")]
    assert private_addresses('a = "198.18.0.1"; b = "127.0.0.1"; c = "198.19.0.0/16"') == []
    assert private_addresses('route = "0.0.0.0/0"') == []


def test_no_harness_file_names_a_private_address() -> None:
    files = harness_files()
    assert any(path.name == "launcher.py" for path in files)
    offending = addresses.files_naming_private_addresses(files, HARNESS.parent)
    assert not offending, (
        "the test harness must use loopback or 198.18.0.0/15 (testcluster/addresses.py), "
        "never 10/8, 172.16/12 or 192.168/16:\n" + "\n".join(offending)
    )


@pytest.mark.parametrize(
    "value",
    [
        addresses.HOST_IP,
        addresses.NODE_IP,
        addresses.SERVICE_CIDR,
        addresses.SERVICE_IP,
        addresses.CLUSTER_CIDR,
        addresses.KWOK_POD_CIDR,
        addresses.KWOK_NODE_IP,
        addresses.NODE_POD_CIDR,
    ],
)
def test_every_cluster_address_is_in_the_benchmark_range(value: str) -> None:
    network = ipaddress.IPv4Network(value, strict=False)
    assert any(network.subnet_of(allowed) for allowed in ALLOWED), value


def test_pod_ranges_lie_in_the_cluster_range_and_apart() -> None:
    cluster = ipaddress.IPv4Network(addresses.CLUSTER_CIDR)
    kwok = ipaddress.IPv4Network(addresses.KWOK_POD_CIDR, strict=False)
    node = ipaddress.IPv4Network(addresses.NODE_POD_CIDR)
    service = ipaddress.IPv4Network(addresses.SERVICE_CIDR)
    assert kwok.subnet_of(cluster)
    assert node.subnet_of(cluster)
    assert not kwok.overlaps(node)
    assert not service.overlaps(cluster)
    assert ipaddress.ip_address(addresses.SERVICE_IP) == next(service.hosts())


def _networks(ranges: addresses.Ranges) -> list[ipaddress.IPv4Network]:
    values = (
        ranges.advertise,
        ranges.service_cidr,
        ranges.cluster_cidr,
        ranges.kwok_pod_cidr,
        ranges.kwok_node_ip,
    )
    return [ipaddress.IPv4Network(value, strict=False) for value in values]


def test_remote_cluster_ranges_are_disjoint_from_the_first_and_the_node() -> None:
    second = _networks(addresses.SECOND)
    first = [
        *_networks(addresses.FIRST),
        *(
            ipaddress.IPv4Network(value, strict=False)
            for value in (
                addresses.NODE_IP,
                addresses.NODE_POD_CIDR,
                addresses.UNREACHABLE_STORE,
                addresses.UNREACHABLE_API,
            )
        ),
    ]
    for network in second:
        assert any(network.subnet_of(allowed) for allowed in ALLOWED), network
        assert not [other for other in first if network.overlaps(other)], network
    service = ipaddress.IPv4Network(addresses.SECOND.service_cidr)
    assert ipaddress.ip_address(addresses.SECOND.service_ip) == next(service.hosts())
    assert ipaddress.IPv4Network(addresses.SECOND.kwok_pod_cidr, strict=False).subnet_of(
        ipaddress.IPv4Network(addresses.SECOND.cluster_cidr)
    )
