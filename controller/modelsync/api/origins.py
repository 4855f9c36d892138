"""HTTP origins (scheme, host, port): how a platform's allow-lists of endpoints are
written and compared — analysis endpoints and git host APIs alike."""

from __future__ import annotations

import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of a plain http(s) URL; None for anything else (user info,
    a query or fragment, another scheme, no host, a bad port)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in url or "#" in url:
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
