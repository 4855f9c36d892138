"""HTTP origins (scheme, host, port): how a platform's allow-lists of endpoints are
written and compared — analysis endpoints and git host APIs alike."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443}
# A host of numbers alone: what inet_aton, curl and browsers read as an IPv4 address
# (2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518).
_NUMERIC = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$")
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.google.internal."})


def hidden_address(host: str) -> str:
    """Why a URL's host is refused whatever an allow-list says, or "": link-local (cloud
    metadata and credentials live there) in any spelling, and any spelling of an IPv4
    address but a.b.c.d or an IPv4-mapped IPv6 one: allow-lists, reviewers and the CRDs'
    rules compare text, the resolver reads them all as the same address."""
    name = host.strip("[]").lower()
    if name in _METADATA_NAMES:
        return f"host {host} is the cloud metadata service"
    if _NUMERIC.match(name):
        try:
            canonical = str(ipaddress.IPv4Address(name.rstrip(".")))
        except ValueError:
            canonical = ""
        if canonical != name.rstrip("."):
            return f"host {host} spells an IPv4 address otherwise than a.b.c.d; write a.b.c.d"
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"host {host} is an IPv4-mapped address; write the IPv4 address"
    if address.is_link_local:
        return f"host {host} is link-local (where cloud metadata and credentials live)"
    return ""


Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of a plain http(s) URL; None for anything else (user info,
    a query or fragment, another scheme, no host, a bad port, a `hidden_address`)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in url or "#" in url:
        return None
    if hidden_address(parts.hostname):
        return None
    return parts.scheme, parts.hostname, DEFAULT_PORTS[parts.scheme] if port is None else port


def origin_text(found: Origin) -> str:
    """The one spelling allow-lists hold and compare: scheme://host:port."""
    scheme, host, port = found
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def parse_origin(text: str, what: str, example: str) -> str:
    """An allowed origin as the platform writes it (scheme://host[:port]), in the one
    spelling; ValueError says what is wrong with it (`what`: "an analysis endpoint")."""
    found = origin(text)
    if found is None or urllib.parse.urlsplit(text).path not in ("", "/"):
        raise ValueError(
            f"{text!r} is not {what}: write scheme://host[:port] "
            f"(http or https, no path, user or query), e.g. {example}"
        )
    return origin_text(found)
