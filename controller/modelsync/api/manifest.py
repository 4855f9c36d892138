"""Kubernetes objects as JSON, typed without Any: `JsonValue` for any value, `Manifest`
for an object, and readers that narrow a path of such a value to one type.

These readers never raise: a field that is absent, null or of another type reads as
the default. They are for objects the cluster or a tenant's files hand us (Deployments,
Pods, Secrets, a revision's manifests) where "absent" and "wrong" mean the same to the
decision. Our own resources are read by `api.fields` instead (parsed once, by the typed
views of api/modelsync.py and api/modeldeployment.py), which names a field that
disagrees with its CRD.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TypeAlias

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
Manifest: TypeAlias = dict[str, JsonValue]

_EMPTY: Mapping[str, JsonValue] = {}


def get(value: object, *path: str) -> object:
    """The value at `path` (keys of nested objects), or None where one is missing."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def mapping(value: object, *path: str) -> Mapping[str, JsonValue]:
    """The object at `path`, or an empty one."""
    found = get(value, *path)
    return found if isinstance(found, Mapping) else _EMPTY


def items(value: object, *path: str) -> list[Mapping[str, JsonValue]]:
    """The objects of the list at `path` (what is not an object is left out)."""
    found = get(value, *path)
    if not isinstance(found, list):
        return []
    return [item for item in found if isinstance(item, Mapping)]


def text(value: object, *path: str, default: str = "") -> str:
    """The string at `path`, or `default`."""
    found = get(value, *path)
    return found if isinstance(found, str) else default


def integer(value: object, *path: str, default: int = 0) -> int:
    """The number at `path` as an int (a float is truncated, as int() does), or `default`.
    True and False are not numbers here."""
    found = get(value, *path)
    if isinstance(found, bool) or not isinstance(found, int | float):
        return default
    return int(found)


def labels(value: object, *path: str) -> dict[str, str]:
    """The map of strings at `path` (labels, annotations, a Secret's data): entries
    whose value is not a string are left out."""
    return {str(key): item for key, item in mapping(value, *path).items() if isinstance(item, str)}


def child(obj: Manifest, *path: str) -> Manifest:
    """The object at `path` inside `obj`, for writing: created empty where it is missing
    (or is not an object). For objects we build, whose shape we know."""
    for key in path:
        found = obj.get(key)
        if not isinstance(found, dict):
            found = {}
            obj[key] = found
        obj = found
    return obj


def json_value(value: object) -> JsonValue:
    """`value` as JSON (a copy), for what came typed as object: ValueError where it
    holds something JSON has no word for."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): json_value(item) for key, item in value.items()}
    raise ValueError(f"{type(value).__name__} is not JSON")


def digest(value: JsonValue) -> bytes:
    """16 bytes that are equal for equal content, whatever its key order (the canonical
    JSON text, hashed); TypeError or ValueError for what JSON has no word for."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
