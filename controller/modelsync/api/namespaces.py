"""Namespace patterns (kopf's): how the platform writes the namespaces the operator
watches and those its grants name (--namespace, --allow-other-namespaces, ...)."""

from __future__ import annotations

import fnmatch


def named_outright(patterns: tuple[str, ...]) -> bool:
    """Whether the watched namespaces are plain names (no glob, no exclusion)."""
    return bool(patterns) and all(not set(p) & set("*?[!,") for p in patterns)


def namespace_matches(namespace: str, patterns: tuple[str, ...]) -> bool:
    """kopf's namespace patterns: a namespace matches when any pattern does; a pattern is
    comma-separated globs, where "!glob" leaves namespaces out ("*,!kube-*")."""
    for pattern in patterns:
        globs = [g.strip() for g in pattern.split(",") if g.strip()]
        matches = not globs or globs[0].startswith("!")
        for glob in globs:
            if glob.startswith("!"):
                matches = matches and not fnmatch.fnmatchcase(namespace, glob[1:])
            else:
                matches = matches or fnmatch.fnmatchcase(namespace, glob)
        if matches:
            return True
    return False
